//! Accepted connections, with limits: at most `server.max_connections` at once (further
//! clients wait in the kernel's backlog), the TLS handshake (when on) and the HTTP/2 preface
//! each within `server.preface_timeout_ms` (a socket that never speaks is closed), and no busy
//! loop when accept fails (out of file descriptors): it backs off. Handshakes run in their own
//! tasks, so a slow one never holds up the accept loop.
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
    io: Io,
    _slot: OwnedSemaphorePermit,
    /// Where this connection's client-certificate names are kept, to forget them on close.
    peers: Option<(Arc<crate::auth::Peers>, std::net::SocketAddr)>,
    /// Until the first bytes arrive: the deadline for them.
    preface: Option<Pin<Box<Sleep>>>,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// The accept loop as a stream for `serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    limits: Limits,
    tls: Option<Arc<crate::tls::Tls>>,
    peers: Arc<crate::auth::Peers>,
) -> impl Stream<Item = io::Result<Conn>> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let tcp = loop {
                match listener.accept().await {
                    Ok((s, _)) => break s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            };
            if tx.is_closed() {
                return;
            }
            // Replies of two TCP segments would otherwise wait ~40 ms for an ACK.
            let _ = tcp.set_nodelay(true);
            let (tx, tls, peers) = (tx.clone(), tls.clone(), peers.clone());
            tokio::spawn(async move {
                let mut registered = None;
                let io = match tls {
                    None => Io::Plain(tcp),
                    Some(t) => {
                        let hs = t.acceptor.accept(tcp);
                        match tokio::time::timeout(limits.preface_timeout, hs).await {
                            Ok(Ok(s)) => {
                                // Mutual TLS: remember the client certificate's names for the
                                // role check.
                                let (tcp, session) = s.get_ref();
                                if let (Some(cert), Ok(addr)) = (
                                    session.peer_certificates().and_then(|c| c.first()),
                                    tcp.peer_addr(),
                                ) {
                                    peers.insert(addr, crate::auth::certificate_names(cert));
                                    registered = Some((peers.clone(), addr));
                                }
                                Io::Tls(Box::new(s))
                            }
                            // A failed or slow handshake (say, plaintext on a TLS port) just
                            // closes the socket.
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        }
                    }
                };
                let conn = Conn {
                    io,
                    _slot: slot,
                    peers: registered,
                    preface: Some(Box::pin(tokio::time::sleep(limits.preface_timeout))),
                };
                let _ = tx.send(Ok(conn)).await;
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let me = &mut *self;
        let polled = match &mut me.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        match polled {
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

/// Runs `$e` on the connection's stream, plain or TLS.
macro_rules! on_io {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.io {
            Io::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Io::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        on_io!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        on_io!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        on_io!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some((peers, addr)) = &self.peers {
            peers.remove(addr);
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match &self.io {
            Io::Plain(s) => s.connect_info(),
            Io::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}
