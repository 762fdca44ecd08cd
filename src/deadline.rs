//! The server's own deadline for a call: a unary request, reading its body included, must
//! answer within `server.request_timeout_ms`, else DEADLINE_EXCEEDED.
//!
//! tonic's `Server::timeout` does the same but answers CANCELLED, which tells a client the
//! wrong story (nobody cancelled); a client's own shorter `grpc-timeout` is still honoured by
//! tonic underneath. Streaming calls return their response headers at once, so the deadline
//! ends there and a long stream is never cut.
use std::task::{Context, Poll};
use std::time::Duration;

type Answer<R, E> = Result<R, E>;
type Mapper<R, E> = fn(Result<Answer<R, E>, tokio::time::error::Elapsed>) -> Answer<R, E>;

/// Applies the deadline to every call.
#[derive(Clone, Copy)]
pub struct DeadlineLayer(pub Duration);

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            limit: self.0,
        }
    }
}

#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, B> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = futures::future::Map<
        tokio::time::Timeout<S::Future>,
        Mapper<http::Response<tonic::body::Body>, S::Error>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        use futures::FutureExt;
        let answer: Mapper<Self::Response, S::Error> = |r| match r {
            Ok(answer) => answer,
            Err(_) => Ok(tonic::Status::deadline_exceeded(
                "the call took longer than server.request_timeout_ms",
            )
            .into_http()),
        };
        tokio::time::timeout(self.limit, self.inner.call(req)).map(answer)
    }
}
