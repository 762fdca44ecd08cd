//! Accepted connections, with limits: at most `server.max_connections` at once, the TLS
//! handshake (when on) and the HTTP/2 preface each within `server.preface_timeout_ms` (a socket
//! that never speaks is closed), and no busy loop when accept fails (out of file descriptors):
//! it backs off. Handshakes run in their own tasks, so a slow one never holds up the accept loop.
//!
//! At the limit, a new socket is not left waiting behind silent ones: the oldest connection
//! that has not yet sent a byte is closed to make room (a flood of idle sockets sheds itself,
//! and a real client, which speaks at once, gets in). Only when every connection has spoken
//! does a new one wait in the kernel's backlog.
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::task::AtomicWaker;
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

/// A connection that has not spoken yet, as the accept loop sees it: it can be told to close.
#[derive(Default)]
struct Silent {
    spoke: AtomicBool,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

impl Silent {
    fn evict(&self) {
        self.evicted.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once evicted (for the TLS handshake's select).
    fn poll_evicted(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        if self.evicted.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Connections that may still be silent, oldest first (entries that spoke or closed are
/// skipped when met, and swept when the queue grows past twice the limit).
struct SilentQueue {
    queue: Mutex<VecDeque<Weak<Silent>>>,
    sweep_at: usize,
}

impl SilentQueue {
    fn push(&self, s: &Arc<Silent>) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.sweep_at {
            q.retain(|w| {
                w.upgrade()
                    .is_some_and(|s| !s.spoke.load(Ordering::Acquire))
            });
        }
        q.push_back(Arc::downgrade(s));
    }

    /// Closes the oldest silent connection; false when there is none.
    fn evict_oldest(&self) -> bool {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(w) = q.pop_front() {
            if let Some(s) = w.upgrade()
                && !s.spoke.load(Ordering::Acquire)
            {
                s.evict();
                return true;
            }
        }
        false
    }
}

/// One accepted connection; holds its slot until dropped.
pub struct Conn {
    io: Io,
    _slot: OwnedSemaphorePermit,
    silent: Arc<Silent>,
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
    let silent_queue = SilentQueue {
        queue: Mutex::new(VecDeque::new()),
        sweep_at: 2 * limits.max_connections.max(1),
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Conn>>(64);
    tokio::spawn(async move {
        loop {
            let tcp = loop {
                match listener.accept().await {
                    Ok((s, _)) => break s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                }
            };
            let slot = match slots.clone().try_acquire_owned() {
                Ok(slot) => slot,
                Err(_) => {
                    // Full: close the oldest silent connection, or else wait for any to end.
                    silent_queue.evict_oldest();
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    slot
                }
            };
            if tx.is_closed() {
                return;
            }
            // Replies of two TCP segments would otherwise wait ~40 ms for an ACK.
            let _ = tcp.set_nodelay(true);
            let silent = Arc::new(Silent::default());
            silent_queue.push(&silent);
            let (tx, tls, peers) = (tx.clone(), tls.clone(), peers.clone());
            tokio::spawn(async move {
                let mut registered = None;
                let io = match tls {
                    None => Io::Plain(tcp),
                    Some(t) => {
                        let hs = t.acceptor.accept(tcp);
                        let evicted = futures::future::poll_fn(|cx| silent.poll_evicted(cx));
                        let hs = async {
                            tokio::select! {
                                r = hs => Some(r),
                                () = evicted => None,
                            }
                        };
                        match tokio::time::timeout(limits.preface_timeout, hs).await {
                            // Evicted mid-handshake to make room.
                            Ok(None) => return,
                            Ok(Some(Ok(s))) => {
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
                            Ok(Some(Err(e))) => {
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
                    silent,
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
                if buf.filled().len() > before && me.preface.is_some() {
                    me.preface = None;
                    me.silent.spoke.store(true, Ordering::Release);
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let expired = me.preface.as_mut().is_some_and(|d| {
                    d.as_mut().poll(cx).is_ready() || me.silent.poll_evicted(cx).is_ready()
                });
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
