//! Liveness and readiness.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;
use service_kit::Problem;

use super::AppState;

/// Liveness: the process answers. No I/O, so a slow database never restarts it.
pub(super) async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers a read of the table in time, and we are not shutting down.
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    if state.lifecycle.is_draining() {
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("shutting down")
            .into_response();
    }
    let result = state.store.ping(state.readiness_timeout).await;
    state.record_database(result.as_ref().map(|_| ()));
    match result {
        Ok(()) => Json(json!({ "status": "ready", "database": "up" })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness: database check failed");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("the database does not answer")
                .into_response()
        }
    }
}
