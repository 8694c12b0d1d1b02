//! The HTTP/1.1 accept loop both services run, over hyper directly: one task
//! per connection, `TCP_NODELAY` (a response is never held back waiting for an
//! ACK), and a handler made per connection, so it knows its peer without a
//! per-request extension.
//!
//! Every connection is bounded ([`ConnectionLimits`]):
//! - at most `max_connections` are open; further ones wait in the listen
//!   backlog until one closes;
//! - a request's head must arrive within `header_read_timeout` of its first
//!   byte (of the connection's start, for the first request), or the
//!   connection is closed: a client that trickles its headers (slowloris)
//!   holds nothing for long;
//! - a kept-alive connection waiting for its next request is closed after
//!   `idle_timeout`;
//! - a head larger than `max_head_bytes` gets hyper's own 431 (requests under
//!   it are checked finely, with problem+json answers, by `telemetry`).
//!
//! On shutdown it stops accepting, and open connections finish the request
//! they are answering, then close; `lifecycle::serve` bounds that wait.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Answers the requests of one connection.
pub trait Respond: Send + Sync + 'static {
    fn respond(&self, request: Request) -> impl Future<Output = Response> + Send + use<Self>;
}

impl Respond for Router {
    fn respond(&self, request: Request) -> impl Future<Output = Response> + Send + use<> {
        let router = self.clone();
        async move {
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    }
}

/// Bounds on connections (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_head_bytes: usize,
}

/// Accepts connections until `shutdown` resolves, each answered by the
/// handler `handler_for` makes for its peer; then waits for the open
/// connections to finish their requests.
pub async fn serve<R: Respond>(
    listener: TcpListener,
    handler_for: impl Fn(SocketAddr) -> R,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .keep_alive(true)
        .max_buf_size(limits.max_head_bytes.max(64 * 1024));
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let stopping = CancellationToken::new();
    let connections = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors, or a connection reset before it was
                    // accepted: wait a little instead of spinning.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            handler: handler_for(peer),
            activity: Arc::new(Activity::new()),
            peer,
        };
        let (http, stopping) = (http.clone(), stopping.clone());
        connections.spawn(async move {
            connection.serve(stream, &http, limits, stopping).await;
            drop(permit);
        });
    }
    drop(listener);
    stopping.cancel();
    connections.close();
    connections.wait().await;
}

/// One accepted connection and what its watchdog knows of it.
struct Connection<R> {
    handler: R,
    activity: Arc<Activity>,
    peer: SocketAddr,
}

impl<R: Respond> Connection<R> {
    async fn serve(
        self,
        stream: TcpStream,
        http: &http1::Builder,
        limits: ConnectionLimits,
        stopping: CancellationToken,
    ) {
        let Self {
            handler,
            activity,
            peer,
        } = self;
        let io = TokioIo::new(Watched {
            stream,
            activity: activity.clone(),
        });
        let handling = activity.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            handling.request_started();
            let response = handler.respond(request.map(Body::new));
            let handling = handling.clone();
            async move {
                let response = response.await;
                handling.request_answered();
                Ok::<_, Infallible>(response)
            }
        });
        let connection = http.serve_connection(io, service);
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            let deadline = activity.deadline(limits);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, %peer, "connection ended with an error");
                    }
                    return;
                }
                () = stopping.cancelled(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = tokio::time::sleep_until(deadline.into()), if !closing => match activity.verdict(limits) {
                    Verdict::HeadTooSlow => {
                        tracing::debug!(%peer, "closing a connection: no complete request head in time");
                        return;
                    }
                    Verdict::Idle => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    Verdict::Busy => {}
                },
            }
        }
    }
}

/// What a connection has been doing, in milliseconds since it opened.
/// Updated by its IO and its handler, read by its watchdog (all in the
/// connection's task).
#[derive(Debug)]
struct Activity {
    opened: Instant,
    /// Since when it has been receiving a request head; `NONE` when it is not.
    head_since: AtomicU64,
    /// Since when it has been idle: no head coming in, no request answered.
    idle_since: AtomicU64,
    /// Requests being answered.
    handling: AtomicU32,
}

const NONE: u64 = u64::MAX;

/// What the watchdog makes of a connection at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A head started arriving too long ago and is still not complete.
    HeadTooSlow,
    /// Nothing has happened on it for too long.
    Idle,
    Busy,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            // The first request's head is awaited from the start.
            head_since: AtomicU64::new(0),
            idle_since: AtomicU64::new(NONE),
            handling: AtomicU32::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// Bytes arrived: a head starts, unless one is already coming or a
    /// request is being answered (its body, or the next request pipelined).
    fn read(&self) {
        if self.head_since.load(Ordering::Relaxed) == NONE
            && self.handling.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.now(), Ordering::Relaxed);
            self.idle_since.store(NONE, Ordering::Relaxed);
        }
    }

    fn request_started(&self) {
        self.handling.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        self.idle_since.store(NONE, Ordering::Relaxed);
    }

    fn request_answered(&self) {
        if self.handling.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.idle_since.store(self.now(), Ordering::Relaxed);
        }
    }

    fn verdict(&self, limits: ConnectionLimits) -> Verdict {
        let now = self.now();
        let head_since = self.head_since.load(Ordering::Relaxed);
        let idle_since = self.idle_since.load(Ordering::Relaxed);
        let past = |since: u64, limit: Duration| {
            since != NONE && now.saturating_sub(since) >= millis(limit)
        };
        if past(head_since, limits.header_read_timeout) {
            Verdict::HeadTooSlow
        } else if past(idle_since, limits.idle_timeout) {
            Verdict::Idle
        } else {
            Verdict::Busy
        }
    }

    /// When to look again: when the head or the idleness in progress would
    /// run out; else (a request is being answered) after the idle timeout.
    fn deadline(&self, limits: ConnectionLimits) -> Instant {
        let after = |since: u64, limit: Duration| {
            (since != NONE).then(|| since.saturating_add(millis(limit)))
        };
        let head = after(
            self.head_since.load(Ordering::Relaxed),
            limits.header_read_timeout,
        );
        let idle = after(self.idle_since.load(Ordering::Relaxed), limits.idle_timeout);
        let at = head
            .into_iter()
            .chain(idle)
            .min()
            .unwrap_or_else(|| self.now().saturating_add(millis(limits.idle_timeout)));
        self.opened + Duration::from_millis(at)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 2)
}

/// The connection's stream, telling its [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        // hyper then queues bodies and writes them with writev, without copying.
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ConnectionLimits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(300),
        max_connections: 8,
        max_head_bytes: 64 * 1024,
    };

    #[test]
    fn a_head_that_takes_too_long_is_cut_and_an_idle_connection_closed() {
        let activity = Activity::new();
        activity.head_since.store(1_000, Ordering::Relaxed);
        assert_eq!(activity.verdict(LIMITS), Verdict::Busy, "just started");
        let activity = Activity {
            opened: Instant::now() - Duration::from_millis(500),
            ..Activity::new()
        };
        assert_eq!(
            activity.verdict(LIMITS),
            Verdict::HeadTooSlow,
            "no request head within the header timeout of the connection's start"
        );
        activity.request_started();
        assert_eq!(
            activity.verdict(LIMITS),
            Verdict::Busy,
            "a request is being answered"
        );
        activity.read();
        assert_eq!(
            activity.head_since.load(Ordering::Relaxed),
            NONE,
            "a body is not a head"
        );
        activity.request_answered();
        activity.idle_since.store(0, Ordering::Relaxed);
        assert_eq!(activity.verdict(LIMITS), Verdict::Idle);
        activity.read();
        assert_eq!(
            activity.verdict(LIMITS),
            Verdict::Busy,
            "the next head started"
        );
    }

    #[test]
    fn the_watchdog_wakes_when_the_next_limit_runs_out() {
        let activity = Activity::new();
        let opened = activity.opened;
        assert_eq!(
            activity.deadline(LIMITS),
            opened + LIMITS.header_read_timeout
        );
        activity.request_started();
        activity.request_answered();
        let idle_since = activity.idle_since.load(Ordering::Relaxed);
        assert_eq!(
            activity.deadline(LIMITS),
            opened + Duration::from_millis(idle_since) + LIMITS.idle_timeout
        );
    }
}
