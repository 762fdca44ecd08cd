//! Request bodies under watch: bytes that have arrived but do not yet make a whole gRPC message
//! share one server-wide budget, and a message that has started arriving must finish in time.
//!
//! Without this, each call may park up to `server.max_message_bytes` in the decoder while its
//! message trickles in, on every stream of every connection (128 x 1 MiB per connection), for
//! as long as the client likes. The body of each call is wrapped; as bytes of an unfinished
//! message arrive they are charged to one shared counter, and given back when the message
//! completes or the call ends. A call whose bytes would push the total past
//! `server.max_partial_bytes` fails with RESOURCE_EXHAUSTED; one whose message stays
//! unfinished for `server.request_timeout_ms` fails with DEADLINE_EXCEEDED. Between messages a
//! stream may idle freely (SubmitLeads waits for leads). Whole messages (the normal case: a
//! lead fits in one frame) touch neither the counter nor a timer.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http_body::{Body, Frame};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The shared counter.
#[derive(Debug)]
pub struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget {
            used: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes held right now (for tests and metrics).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> bool {
        let before = self.used.fetch_add(n, Ordering::AcqRel);
        if before + n > self.limit {
            self.used.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Where a call's byte stream is in gRPC's framing: a 5-byte prefix (flag, u32 length), then
/// the message.
#[derive(Debug, Default)]
struct Framing {
    prefix: [u8; 5],
    prefix_len: usize,
    /// Message bytes still to come for the current message.
    remaining: usize,
}

impl Framing {
    /// Feeds a chunk; returns how many bytes of it belong to an unfinished message at the end
    /// (to charge) and whether an earlier partial message completed (to give back).
    fn feed(&mut self, mut chunk: &[u8]) -> (usize, bool) {
        let mut completed = false;
        let mut open = 0;
        while !chunk.is_empty() {
            if self.remaining == 0 && self.prefix_len < 5 {
                let n = (5 - self.prefix_len).min(chunk.len());
                self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&chunk[..n]);
                self.prefix_len += n;
                chunk = &chunk[n..];
                open += n;
                if self.prefix_len == 5 {
                    let len = u32::from_be_bytes([
                        self.prefix[1],
                        self.prefix[2],
                        self.prefix[3],
                        self.prefix[4],
                    ]) as usize;
                    self.remaining = len;
                    if len == 0 {
                        self.prefix_len = 0;
                        completed = true;
                        open = 0;
                    }
                }
                continue;
            }
            let n = self.remaining.min(chunk.len());
            chunk = &chunk[n..];
            self.remaining -= n;
            open += n;
            if self.remaining == 0 {
                self.prefix_len = 0;
                completed = true;
                open = 0;
            }
        }
        (open, completed)
    }
}

impl Framing {
    fn mid_message(&self) -> bool {
        self.prefix_len > 0
    }
}

/// What every call's body is held to.
#[derive(Debug, Clone)]
pub struct Limits {
    pub budget: Arc<Budget>,
    /// How long one message may take to arrive once it has started.
    pub message_timeout: Duration,
}

/// A request body charged against the budget.
pub struct Metered<B> {
    inner: B,
    limits: Limits,
    framing: Framing,
    held: usize,
    /// Armed when the body waits in the middle of a message.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The budget refused this call; it stays refused.
    refused: bool,
}

fn refusal() -> BoxError {
    Box::new(tonic::Status::resource_exhausted(
        "the server holds too many unfinished request bytes (server.max_partial_bytes); \
         retry later",
    ))
}

impl<B> Metered<B> {
    pub fn new(inner: B, limits: Limits) -> Metered<B> {
        Metered {
            inner,
            limits,
            framing: Framing::default(),
            held: 0,
            deadline: None,
            refused: false,
        }
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        if self.held > 0 {
            self.limits.budget.give(self.held);
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.refused {
            return Poll::Ready(Some(Err(refusal())));
        }
        let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => f,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {
                if !this.framing.mid_message() {
                    return Poll::Pending;
                }
                let limit = this.limits.message_timeout;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if deadline.as_mut().poll(cx).is_ready() {
                    let status = tonic::Status::deadline_exceeded(
                        "the request message did not arrive within server.request_timeout_ms",
                    );
                    return Poll::Ready(Some(Err(Box::new(status))));
                }
                return Poll::Pending;
            }
        };
        if let Some(data) = frame.data_ref() {
            let (open, completed) = this.framing.feed(data.chunk());
            if completed {
                this.deadline = None;
                if this.held > 0 {
                    this.limits.budget.give(this.held);
                    this.held = 0;
                }
            }
            if open > 0 {
                if !this.limits.budget.take(open) {
                    // The call fails: its bytes go back now, not when the handler lets go of
                    // the body, so a second call does not fail on bytes already doomed.
                    this.limits.budget.give(this.held);
                    this.held = 0;
                    this.refused = true;
                    return Poll::Ready(Some(Err(refusal())));
                }
                this.held += open;
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Wraps every call's body.
#[derive(Clone)]
pub struct BudgetLayer(pub Limits);

impl<S> tower::Layer<S> for BudgetLayer {
    type Service = Budgeted<S>;

    fn layer(&self, inner: S) -> Budgeted<S> {
        Budgeted {
            inner,
            limits: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Budgeted<S> {
    inner: S,
    limits: Limits,
}

impl<S, B> tower::Service<http::Request<B>> for Budgeted<S>
where
    S: tower::Service<http::Request<tonic::body::Body>>,
    B: Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> S::Future {
        let limits = self.limits.clone();
        self.inner
            .call(req.map(|b| tonic::body::Body::new(Metered::new(b, limits))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8];
        f.extend_from_slice(&(len as u32).to_be_bytes());
        f.extend(std::iter::repeat_n(7u8, len));
        f
    }

    #[test]
    fn whole_messages_hold_nothing() {
        let mut f = Framing::default();
        let mut two = frame(10);
        two.extend(frame(0));
        two.extend(frame(3));
        assert_eq!(f.feed(&two), (0, true));
    }

    #[test]
    fn a_split_message_is_held_until_it_completes() {
        let m = frame(100);
        let mut f = Framing::default();
        assert_eq!(f.feed(&m[..3]), (3, false));
        assert_eq!(f.feed(&m[3..50]), (47, false));
        assert_eq!(f.feed(&m[50..]), (0, true));
        // A message completes and the next starts in the same chunk.
        let mut joined = frame(4);
        joined.extend(&frame(20)[..9]);
        let mut f = Framing::default();
        assert_eq!(f.feed(&joined[..6]), (6, false));
        assert_eq!(f.feed(&joined[6..]), (9, true));
    }

    #[test]
    fn the_budget_refuses_past_its_limit_and_gets_it_back() {
        let b = Budget::new(10);
        assert!(b.take(6));
        assert!(!b.take(5));
        assert_eq!(b.used(), 6);
        b.give(6);
        assert!(b.take(10));
    }
}
