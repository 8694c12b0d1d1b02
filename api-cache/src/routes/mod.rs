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
use service_kit::{Lifecycle, Metrics, request_id, telemetry};

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
        // Innermost: a panic becomes a 500 that the metrics and the access log see.
        .layer(service_kit::problem::catch_panics())
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            telemetry::track_requests,
        ))
        // Outermost: the request id exists before anything logs, and reaches api-rest.
        .layer(middleware::from_fn(request_id::ensure_request_id))
        .with_state(state)
}

fn describe_metrics(metrics: &Metrics) {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    metrics.scope(|| {
        describe_counter!(
            "api_cache_requests_total",
            "Proxied requests by outcome: hit, stale (served stale), miss, revalidated (origin said 304), collapsed (waited for an identical fetch), bypass (cache not used), pass (other methods), error."
        );
        describe_counter!("api_cache_origin_requests_total", "Requests sent to the origin, by status (or timeout/error).");
        describe_histogram!(
            "api_cache_origin_request_duration_seconds",
            Unit::Seconds,
            "Time from sending a request to the origin to its response headers, by status."
        );
        describe_counter!("api_cache_lookups_total", "Cache lookups by tier (local, redis) and result (hit, miss, unavailable).");
        describe_counter!("api_cache_stored_total", "Entries written to Redis.");
        describe_histogram!("api_cache_stored_body_bytes", Unit::Bytes, "Stored body size (as stored: gzip for text).");
        describe_counter!("api_cache_store_errors_total", "Writes to Redis that failed.");
        describe_counter!("api_cache_store_skipped_total", "Writes to Redis skipped: too many in flight.");
        describe_histogram!(
            "api_cache_redis_operation_duration_seconds",
            Unit::Seconds,
            "Redis operation time, by operation."
        );
        describe_counter!("api_cache_redis_errors_total", "Failed or timed-out Redis operations, by operation.");
        describe_gauge!("api_cache_redis_breaker_state", "Redis circuit breaker: 0 closed, 1 open, 2 half-open.");
        describe_counter!("api_cache_redis_breaker_transitions_total", "Breaker state changes, by new state.");
        describe_counter!("api_cache_purges_total", "Purges, by kind (url, prefix, surrogate_key) and softness.");
        describe_gauge!("api_cache_local_bytes", Unit::Bytes, "Bytes held by the in-process tier.");
        describe_gauge!("api_cache_data_version", "The origin's data version last announced on its change feed.");
        // Series that exist from the start, so rates and alerts have data at once.
        for outcome in proxy::Outcome::ALL {
            metrics::counter!("api_cache_requests_total", "outcome" => outcome.label()).absolute(0);
        }
        for operation in ["get", "store"] {
            metrics::counter!("api_cache_redis_errors_total", "operation" => operation).absolute(0);
        }
    });
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    state.metrics.scope(|| {
        metrics::gauge!("api_cache_local_bytes").set(state.storage.local.weight() as f64);
        metrics::gauge!("api_cache_data_version").set(state.generation.current() as f64);
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
