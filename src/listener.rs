//! Accepted connections, with limits: at most `server.max_connections` at once (further
//! clients wait in the kernel's backlog), the HTTP/2 preface within
//! `server.preface_timeout_ms` (a socket that never speaks is closed), and no busy loop when
//! accept fails (out of file descriptors): it backs off.
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Pause after a failed accept (EMFILE and the like), instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub preface_timeout: Duration,
}

/// One accepted connection; holds its slot until dropped.
pub struct Conn {
    inner: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the first bytes arrive: the deadline for them.
    preface: Option<Pin<Box<Sleep>>>,
}

/// The accept loop as a stream for `serve_with_incoming`.
pub fn incoming(listener: TcpListener, limits: Limits) -> impl Stream<Item = io::Result<Conn>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    futures::stream::unfold(
        (listener, slots, limits),
        |(listener, slots, limits)| async move {
            let slot = slots.clone().acquire_owned().await.ok()?;
            loop {
                match listener.accept().await {
                    Ok((s, _)) => {
                        // Replies of two TCP segments would otherwise wait ~40 ms for an ACK.
                        let _ = s.set_nodelay(true);
                        let conn = Conn {
                            inner: s,
                            _slot: slot,
                            preface: Some(Box::pin(tokio::time::sleep(limits.preface_timeout))),
                        };
                        return Some((Ok(conn), (listener, slots, limits)));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            }
        },
    )
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let me = &mut *self;
        match Pin::new(&mut me.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    me.preface = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = me
                    .preface
                    .as_mut()
                    .is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface in time",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

use std::future::Future;

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}
