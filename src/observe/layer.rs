//! The request layer: every RPC gets a span (method, lead, rep, pool, code, latency, the
//! caller's W3C trace), one log line at its end, and its count and latency in the metrics.
//! It is the outermost layer, so calls refused by auth or limits are counted too.
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use prost::Message;
use tracing::{Instrument, field::Empty};

use super::Metrics;

/// What the layer needs.
#[derive(Clone)]
pub struct ObserveLayer {
    pub metrics: Arc<Metrics>,
    /// One info line per finished request.
    pub log_requests: bool,
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    layer: ObserveLayer,
}

/// Every method the server knows, "/package.Service/Method" → (service, method): labels come
/// from here, never from the request path, so a client cannot mint metric series.
fn methods() -> &'static HashMap<String, (&'static str, &'static str)> {
    static METHODS: OnceLock<HashMap<String, (&'static str, &'static str)>> = OnceLock::new();
    METHODS.get_or_init(|| {
        let sets = [
            crate::grpc::pb::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut out = HashMap::new();
        for bytes in sets {
            let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
                continue;
            };
            for file in set.file {
                let package = file.package().to_string();
                for service in file.service {
                    let full = format!("{package}.{}", service.name());
                    // Leaked once per process: a fixed, small set of names.
                    let s: &'static str = Box::leak(full.clone().into_boxed_str());
                    for m in service.method {
                        let name: &'static str = Box::leak(m.name().to_string().into_boxed_str());
                        out.insert(format!("/{full}/{name}"), (s, name));
                    }
                }
            }
        }
        out
    })
}

/// The (service, method) labels of a request path.
pub fn method_of(path: &str) -> (&'static str, &'static str) {
    methods()
        .get(path)
        .copied()
        .unwrap_or(("unknown", "unknown"))
}

const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The status code name in a `grpc-status` header or trailer.
fn code_in(headers: &http::HeaderMap) -> Option<&'static str> {
    let n: usize = headers.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    Some(CODES.get(n).copied().unwrap_or("UNKNOWN"))
}

/// Ends a request once: the metrics, the span's last fields and the log line.
struct Finish {
    metrics: Arc<Metrics>,
    service: &'static str,
    method: &'static str,
    start: Instant,
    span: tracing::Span,
    log: bool,
}

impl Finish {
    fn done(self, code: &'static str) {
        let secs = self.start.elapsed().as_secs_f64();
        self.metrics.rpc(self.service, self.method, code, secs);
        let latency_ms = (secs * 1e6).round() / 1e3;
        let mut notes = super::Notes::default();
        super::with_notes(&self.span, |n| notes = std::mem::take(n));
        record_end(&self.span, code, latency_ms, &notes);
        if self.log {
            let server_fault = matches!(code, "UNKNOWN" | "INTERNAL" | "DATA_LOSS");
            if server_fault {
                tracing::warn!(parent: &self.span, code, latency_ms, "request");
            } else {
                tracing::info!(parent: &self.span, code, latency_ms, "request");
            }
        }
    }
}

/// Writes a finished request's fields on its span in one `record_all` (one formatting pass).
fn record_end(span: &tracing::Span, code: &'static str, latency_ms: f64, notes: &super::Notes) {
    use tracing::field::Value;
    let Some(meta) = span.metadata() else {
        return;
    };
    let fields = meta.fields();
    let field = |name| fields.field(name);
    let (Some(c), Some(l), Some(lead), Some(rep), Some(pool)) = (
        field("code"),
        field("latency_ms"),
        field("lead_id"),
        field("rep_id"),
        field("pool"),
    ) else {
        return;
    };
    fn text(s: &str) -> Option<&str> {
        (!s.is_empty()).then_some(s)
    }
    let (lead_v, rep_v, pool_v) = (text(&notes.lead_id), text(&notes.rep_id), text(&notes.pool));
    let values: [(&tracing::field::Field, Option<&dyn Value>); 5] = [
        (&c, Some(&code as &dyn Value)),
        (&l, Some(&latency_ms as &dyn Value)),
        (&lead, lead_v.as_ref().map(|v| v as &dyn Value)),
        (&rep, rep_v.as_ref().map(|v| v as &dyn Value)),
        (&pool, pool_v.as_ref().map(|v| v as &dyn Value)),
    ];
    span.record_all(&fields.value_set(&values));
}

impl<S, B> tower::Service<http::Request<B>> for Observe<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = ObserveFuture<tracing::instrument::Instrumented<S::Future>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = method_of(req.uri().path());
        let trace = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(super::traceparent::parse);
        let (trace_id, parent_id) = match &trace {
            Some(t) => (t.trace_id.as_str(), t.parent_id.as_str()),
            None => ("", ""),
        };
        let span = tracing::info_span!(
            "rpc",
            service,
            method,
            // Set at creation when known: every later record re-formats the span's fields.
            trace_id = (!trace_id.is_empty()).then_some(trace_id),
            parent_id = (!parent_id.is_empty()).then_some(parent_id),
            lead_id = Empty,
            rep_id = Empty,
            pool = Empty,
            code = Empty,
            latency_ms = Empty,
        );
        #[cfg(feature = "otlp")]
        if !trace_id.is_empty() {
            crate::telemetry::otlp::adopt_parent(&span, req.headers());
        }
        let finish = Finish {
            metrics: self.layer.metrics.clone(),
            service,
            method,
            start: Instant::now(),
            span: span.clone(),
            log: self.layer.log_requests,
        };
        ObserveFuture {
            inner: self.inner.call(req).instrument(span),
            finish: Some(finish),
        }
    }
}

pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        finish: Option<Finish>,
    }
}

impl<F, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<http::Response<tonic::body::Body>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = std::task::ready!(this.inner.poll(cx));
        let Some(finish) = this.finish.take() else {
            return Poll::Ready(res);
        };
        Poll::Ready(match res {
            Ok(resp) => {
                // A trailers-only response (every error) carries its status in the headers.
                let code = code_in(resp.headers());
                Ok(resp.map(|body| {
                    tonic::body::Body::new(ObservedBody {
                        inner: body,
                        finish: Some(finish),
                        code,
                    })
                }))
            }
            Err(e) => {
                finish.done("UNKNOWN");
                Err(e)
            }
        })
    }
}

pin_project! {
    /// The response body: the request ends with its trailers, its last frame, or its drop
    /// (a client that went away: CANCELLED).
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        finish: Option<Finish>,
        code: Option<&'static str>,
    }

    impl<B> PinnedDrop for ObservedBody<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(f) = this.finish.take() {
                f.done(this.code.unwrap_or("CANCELLED"));
            }
        }
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body<Data = bytes::Bytes>,
{
    type Data = bytes::Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = std::task::ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(f)) => {
                if let Some(t) = f.trailers_ref() {
                    *this.code = code_in(t).or(*this.code);
                    if let Some(done) = this.finish.take() {
                        done.done(this.code.unwrap_or("UNKNOWN"));
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(done) = this.finish.take() {
                    done.done("INTERNAL");
                }
            }
            None => {
                if let Some(done) = this.finish.take() {
                    done.done(this.code.unwrap_or("UNKNOWN"));
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_name_their_method_and_others_do_not() {
        assert_eq!(
            method_of("/leadrouter.v1.LeadService/ScoreLead"),
            ("leadrouter.v1.LeadService", "ScoreLead")
        );
        assert_eq!(
            method_of("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(
            method_of("/leadrouter.v1.LeadService/Nope"),
            ("unknown", "unknown")
        );
        let mut h = http::HeaderMap::new();
        h.insert("grpc-status", "3".parse().unwrap());
        assert_eq!(code_in(&h), Some("INVALID_ARGUMENT"));
        h.insert("grpc-status", "99".parse().unwrap());
        assert_eq!(code_in(&h), Some("UNKNOWN"));
    }
}
