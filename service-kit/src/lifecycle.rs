//! Readiness and graceful shutdown.
//!
//! On SIGTERM or Ctrl-C a service first turns `/readyz` red (draining) for
//! `SHUTDOWN_DRAIN_SECONDS` while still serving, so a load balancer stops sending
//! it traffic; then it stops accepting, lets in-flight requests finish for at most
//! `SHUTDOWN_TIMEOUT_SECONDS`, and returns so `main` can close its pools.

use std::future::Future;
use std::io;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::RuntimeConfig;
use crate::server::Respond;

/// Shared by the server loop and the handlers that report readiness.
#[derive(Debug, Clone, Default)]
pub struct Lifecycle {
    draining: Arc<AtomicBool>,
    stopped: CancellationToken,
}

impl Lifecycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// True once shutdown has begun: `/readyz` must answer 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    fn begin_drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Cancelled when the server stops accepting; background tasks watch it to end.
    pub fn stopped(&self) -> CancellationToken {
        self.stopped.clone()
    }
}

/// Runs a service's `main` on a multi-threaded runtime whose workers hand
/// their gathered access lines to the log writer whenever they run out of
/// work, and when they stop.
pub fn run(main: impl Future<Output = ExitCode>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(crate::telemetry::flush_thread_logs)
        .on_thread_stop(crate::telemetry::flush_thread_logs)
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(main),
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM (what Docker and Kubernetes send) or Ctrl-C (SIGINT).
///
/// The handlers are installed when this is called, not when the future is
/// first polled: call it before binding the listener, so that a signal arriving
/// during start-up still means a clean stop instead of the default kill.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            let (mut terminate, mut interrupt) = match (terminate, interrupt) {
                (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot listen for SIGTERM/SIGINT");
                    return std::future::pending().await;
                }
            };
            tokio::select! {
                _ = terminate.recv() => tracing::info!("received SIGTERM"),
                _ = interrupt.recv() => tracing::info!("received Ctrl-C"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("received Ctrl-C");
        }
    }
}

/// Listens on `address`; port 0 picks a free one. Returns the port too.
pub async fn bind(address: SocketAddr) -> io::Result<(TcpListener, u16)> {
    let listener = TcpListener::bind(address).await?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}

/// A listening socket and what answers its connections.
#[derive(Debug)]
pub struct Site<F> {
    pub listener: TcpListener,
    /// Makes the handler of each connection, for its peer (see `server`).
    pub handler_for: F,
}

/// Serves the public site and the admin site until `shutdown` resolves, then
/// drains and stops both as described in the module documentation.
pub async fn serve<P: Respond, A: Respond>(
    public: Site<impl Fn(SocketAddr) -> P>,
    admin: Site<impl Fn(SocketAddr) -> A>,
    lifecycle: Lifecycle,
    runtime: &RuntimeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let drain = Duration::from_secs(runtime.shutdown_drain_seconds);
    let grace = Duration::from_secs(runtime.shutdown_timeout_seconds);
    let stopping = CancellationToken::new();

    let graceful = {
        let lifecycle = lifecycle.clone();
        let stopping = stopping.clone();
        async move {
            shutdown.await;
            lifecycle.begin_drain();
            if !drain.is_zero() {
                tracing::info!(seconds = drain.as_secs(), "draining: readiness is now red");
                tokio::time::sleep(drain).await;
            }
            tracing::info!("no longer accepting connections; finishing in-flight requests");
            lifecycle.stopped.cancel();
            stopping.cancel();
        }
    };

    let limits = runtime.connection_limits();
    let stopped = stopping.clone();
    let servers = async {
        tokio::join!(
            crate::server::serve(public.listener, public.handler_for, limits, graceful),
            crate::server::serve(
                admin.listener,
                admin.handler_for,
                limits,
                stopped.cancelled()
            ),
        )
    };
    let deadline = async {
        stopping.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        _ = servers => {}
        () = deadline => {
            tracing::warn!(seconds = grace.as_secs(), "in-flight requests did not finish in time; closing them");
        }
    }
    Ok(())
}
