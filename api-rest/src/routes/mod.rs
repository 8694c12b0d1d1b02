//! The HTTP surface of api-rest.

mod aggregates;
mod air_quality;
mod answer;
mod aqi;
mod by_station;
mod changes;
mod docs;
mod health;
mod index;
mod latest;
mod openapi;
mod read_retry;
mod stations;

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use http::{HeaderValue, Method, StatusCode, Uri, header};
use service_kit::{Lifecycle, Metrics, Problem, telemetry};

use crate::store::Store;

/// What handlers share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Metrics,
    pub lifecycle: Lifecycle,
    pub max_limit: u64,
    pub readiness_timeout: std::time::Duration,
    /// `Cache-Control` of `/air_quality`, e.g. `public, max-age=30`.
    pub cache_control: Arc<str>,
    /// The data version, kept current by the change listener.
    pub versions: crate::changes::DataVersions,
    /// Permits for open `/changes` streams (`CHANGES_MAX_SUBSCRIBERS`).
    pub changes_subscribers: Arc<tokio::sync::Semaphore>,
    pub request_limits: telemetry::RequestLimits,
    /// `/openapi.json`, rendered once.
    pub openapi: bytes::Bytes,
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

/// The OpenAPI document for a deployment whose `QUERY_MAX_LIMIT` is `max_limit`.
pub fn openapi_document(max_limit: u64) -> bytes::Bytes {
    bytes::Bytes::from(openapi::document(max_limit))
}

/// The public API (`API_REST_PORT`): what api-cache may forward, and nothing
/// else (liveness too is on the admin port).
pub fn public(state: AppState) -> Router {
    air_quality::describe_metrics(&state.metrics);
    describe_metrics(&state.metrics);
    let routes = Router::new()
        .route("/", get(index::describe))
        .route("/air_quality", get(air_quality::list))
        .route("/air_quality/latest", get(latest::latest))
        .route("/air_quality/aggregates", get(aggregates::aggregates))
        .route("/air_quality/aqi", get(aqi::aqi))
        .route("/stations", get(stations::list))
        .route("/stations/{id_entity}", get(stations::one))
        .route("/openapi.json", get(openapi::serve))
        .route("/docs", get(docs::page))
        .route("/docs/{file}", get(docs::file))
        .layer(middleware::from_fn(read_retry::retry_on_the_primary));
    finish(routes, state)
}

/// The operators' endpoints (`API_REST_ADMIN_PORT`), never reachable through
/// the public port: metrics, readiness, and the data-change feed for caches.
pub fn admin(state: AppState) -> Router {
    let routes = Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(render_metrics))
        .route("/changes", get(changes::changes));
    finish(routes, state)
}

/// Problems for unknown paths and methods, and the layers every request goes
/// through.
fn finish(routes: Router<AppState>, state: AppState) -> Router {
    let telemetry = telemetry::RequestTelemetry::new(&state.metrics, state.request_limits);
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Innermost: a panic becomes a 500 that the metrics and the access log see.
        .layer(service_kit::problem::catch_panics())
        // Outermost: the request id exists before anything logs; every request
        // is held to the limits, counted, timed and logged.
        .layer(middleware::from_fn_with_state(
            telemetry,
            telemetry::track_requests,
        ))
        .with_state(state)
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    let pool = state.store.pool_stats();
    state.metrics.scope(|| {
        metrics::gauge!("api_rest_db_pool_connections", "state" => "idle")
            .set(f64::from(pool.idle));
        metrics::gauge!("api_rest_db_pool_connections", "state" => "in_use")
            .set(f64::from(pool.open.saturating_sub(pool.idle)));
        metrics::gauge!("api_rest_db_pool_max_connections").set(f64::from(pool.max));
        metrics::gauge!("api_rest_db_pool_waiting").set(pool.waiting as f64);
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

impl AppState {
    /// A consistent view of the data (see [`crate::store::Store::snapshot`]),
    /// timed and counted.
    pub(crate) async fn snapshot(&self) -> Result<crate::store::Snapshot, crate::error::ApiError> {
        let started = std::time::Instant::now();
        let announced = self.versions.current();
        let snapshot = self
            .store
            .snapshot(announced, read_retry::primary_only())
            .await;
        self.record_database(snapshot.as_ref().map(|_| ()));
        let snapshot = snapshot?;
        if snapshot.from.is_replica() {
            read_retry::used_replica();
        }
        self.record_query("snapshot", started.elapsed());
        self.metrics.scope(|| {
            metrics::counter!("api_rest_reads_total", "from" => snapshot.from.label()).increment(1);
        });
        Ok(snapshot)
    }

    /// Records how long a step of a query took (`snapshot`, `first_row`, `stream`).
    pub(crate) fn record_query(&self, phase: &'static str, elapsed: std::time::Duration) {
        self.metrics.scope(|| {
            metrics::histogram!("api_rest_query_duration_seconds", "phase" => phase)
                .record(elapsed.as_secs_f64());
        });
    }

    /// Whether the database answered; counts failures by kind.
    pub(crate) fn record_database(&self, outcome: Result<(), &sqlx::Error>) {
        self.metrics.scope(|| match outcome {
            Ok(()) => metrics::gauge!("api_rest_database_up").set(1.0),
            Err(error) => {
                let unavailable = crate::error::is_unavailable(error);
                if unavailable {
                    metrics::gauge!("api_rest_database_up").set(0.0);
                }
                let kind = if unavailable { "unavailable" } else { "query" };
                metrics::counter!("api_rest_database_errors_total", "kind" => kind).increment(1);
            }
        });
    }
}

fn describe_metrics(metrics: &Metrics) {
    metrics.scope(|| {
        metrics::describe_histogram!(
            "api_rest_query_duration_seconds",
            metrics::Unit::Seconds,
            "Database time by phase: snapshot (connection, transaction, data version), first_row, stream (all rows)."
        );
        metrics::describe_gauge!("api_rest_database_up", "1 when the database last answered, 0 when it could not be reached.");
        metrics::describe_counter!("api_rest_database_errors_total", "Database errors by kind: unavailable or query.");
        metrics::describe_gauge!("api_rest_db_pool_connections", "Pool connections by state: idle, in_use.");
        metrics::describe_gauge!("api_rest_db_pool_max_connections", "POSTGRES_POOL_MAX_CONNECTIONS.");
        metrics::describe_gauge!("api_rest_db_pool_waiting", "Requests waiting for a pool connection.");
        metrics::describe_counter!(
            "api_rest_reads_total",
            "Snapshots by where they were read: primary (no replica), replica, replica_after_wait, primary_replica_behind, primary_replica_down."
        );
        for from in crate::store::ReadFrom::ALL {
            metrics::counter!("api_rest_reads_total", "from" => from.label()).absolute(0);
        }
        metrics::gauge!("api_rest_database_up").set(0.0);
        for kind in ["unavailable", "query"] {
            metrics::counter!("api_rest_database_errors_total", "kind" => kind).absolute(0);
        }
    });
}

async fn not_found(uri: Uri) -> Problem {
    Problem::new(StatusCode::NOT_FOUND)
        .with_detail(format!(
            "No resource at {}; GET / lists the endpoints.",
            uri.path()
        ))
        .with_instance(uri.path())
}

/// Every route here is read-only.
async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    let mut response = Problem::new(StatusCode::METHOD_NOT_ALLOWED)
        .with_detail(format!(
            "{method} is not supported on {}; this API is read-only.",
            uri.path()
        ))
        .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}
