//! The HTTP surface of api-cache: its own three endpoints, and every other
//! path read through the cache.

mod health;
mod proxy;
mod purge;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::{Router, middleware};
use http::header;
use service_kit::{Lifecycle, Metrics, telemetry};

use secrecy::SecretString;

use crate::cache::coalesce::Coalescer;
use crate::cache::key::CacheKey;
use crate::cache::policy::Policy;
use crate::changes::Generation;
use crate::origin::Origin;
use crate::storage::Storage;
pub use proxy::{Outcome, Shared};

/// What handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub storage: Storage,
    pub origin: Origin,
    pub flights: Arc<Coalescer<CacheKey, Shared>>,
    pub policy: Policy,
    pub key_prefix: Arc<str>,
    pub coalesce_wait: Duration,
    /// How long a replica's fill lock lasts.
    pub lock_ttl: Duration,
    /// The origin's data version, from its change feed.
    pub generation: Generation,
    /// `CACHE_PURGE_TOKEN`; `None` disables the purge endpoint.
    pub purge_token: Option<Arc<SecretString>>,
    pub metrics: Metrics,
    pub lifecycle: Lifecycle,
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

pub fn router(state: AppState) -> Router {
    telemetry::describe_http_metrics(&state.metrics);
    describe_metrics(&state.metrics);
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(render_metrics))
        .route(purge::PATH, axum::routing::post(purge::purge))
        .route("/", any(proxy::proxy))
        .route("/{*path}", any(proxy::proxy))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            telemetry::track_requests,
        ))
        .with_state(state)
}

fn describe_metrics(metrics: &Metrics) {
    metrics.scope(|| {
        metrics::describe_counter!(
            "api_cache_requests_total",
            "Proxied requests by cache outcome: hit, miss, collapsed (waited for a concurrent miss), bypass (Redis unavailable)."
        );
        metrics::describe_counter!(
            "api_cache_origin_requests_total",
            "Requests sent to api-rest, by status (or timeout/error)."
        );
        metrics::describe_counter!("api_cache_stored_total", "Responses written to Redis.");
        metrics::describe_histogram!(
            "api_cache_stored_body_bytes",
            metrics::Unit::Bytes,
            "Body size of responses written to Redis."
        );
    });
}

async fn render_metrics(State(metrics): State<Metrics>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics.render(),
    )
}
