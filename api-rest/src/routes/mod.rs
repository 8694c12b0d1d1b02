//! The HTTP surface of api-rest.

mod air_quality;
mod changes;
mod health;
mod index;

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
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

pub fn router(state: AppState) -> Router {
    telemetry::describe_http_metrics(&state.metrics);
    air_quality::describe_metrics(&state.metrics);
    Router::new()
        .route("/", get(index::describe))
        .route("/air_quality", get(air_quality::list))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(render_metrics))
        .route("/changes", get(changes::changes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            telemetry::track_requests,
        ))
        .with_state(state)
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
