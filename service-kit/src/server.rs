//! The HTTP/1.1 accept loop both services run, over hyper directly: one task
//! per connection, `TCP_NODELAY` (a response is never held back waiting for an
//! ACK), and a handler made per connection, so it can know its peer without
//! a per-request extension. On shutdown it stops accepting and lets open
//! connections finish their requests; `lifecycle::serve` bounds that wait.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
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

/// Accepts connections until `shutdown` resolves, each answered by the
/// handler `handler_for` makes for its peer; then waits for the open
/// connections to finish their requests.
pub async fn serve<R: Respond>(
    listener: TcpListener,
    handler_for: impl Fn(SocketAddr) -> R,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
    let connections = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
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
        let handler = handler_for(peer);
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let response = handler.respond(request.map(Body::new));
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = connections.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
}
