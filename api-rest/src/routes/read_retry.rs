//! A read that fails on the replica before its answer started is read again
//! on the primary, so a replica going away costs no request.
//!
//! Every public request runs in a [`ReadScope`]: `AppState::snapshot` reads
//! from the primary when the scope says so, and notes when it used the
//! replica. A GET or HEAD answered 503 (the database unavailable) after
//! using the replica runs once more, on the primary only. An answer whose
//! body was already streaming cannot be taken back; that is left to the client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::middleware::Next;
use axum::response::Response;
use http::{Method, Request, StatusCode};

tokio::task_local! {
    static SCOPE: ReadScope;
}

#[derive(Debug, Clone, Default)]
struct ReadScope {
    primary_only: bool,
    used_replica: Arc<AtomicBool>,
}

/// Whether this request must read from the primary.
pub(crate) fn primary_only() -> bool {
    SCOPE.try_with(|scope| scope.primary_only).unwrap_or(false)
}

/// Notes that this request read from the replica.
pub(crate) fn used_replica() {
    let _outside_a_request =
        SCOPE.try_with(|scope| scope.used_replica.store(true, Ordering::Relaxed));
}

pub(crate) async fn retry_on_the_primary(request: Request<Body>, next: Next) -> Response {
    let retryable = matches!(*request.method(), Method::GET | Method::HEAD);
    let again = retryable.then(|| {
        let mut copy = Request::new(Body::empty());
        *copy.method_mut() = request.method().clone();
        *copy.uri_mut() = request.uri().clone();
        *copy.version_mut() = request.version();
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        copy
    });
    let scope = ReadScope::default();
    let response = SCOPE.scope(scope.clone(), next.clone().run(request)).await;
    match again {
        Some(again)
            if response.status() == StatusCode::SERVICE_UNAVAILABLE
                && scope.used_replica.load(Ordering::Relaxed) =>
        {
            tracing::warn!(uri = %again.uri(), "the replica failed mid-read; reading again from the primary");
            let primary = ReadScope {
                primary_only: true,
                ..ReadScope::default()
            };
            SCOPE.scope(primary, next.run(again)).await
        }
        _ => response,
    }
}
