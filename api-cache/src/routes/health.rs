//! Liveness and readiness.
//!
//! api-cache is ready whenever it is not shutting down: with Redis down it still
//! answers (bypassing the cache), and with api-rest down it still serves what
//! Redis holds. Readiness reports Redis' state but does not depend on it.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;
use service_kit::Problem;

use super::AppState;

pub(super) async fn live() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

pub(super) async fn ready(State(state): State<AppState>) -> Response {
    if state.lifecycle.is_draining() {
        return Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("shutting down")
            .into_response();
    }
    let redis = if state.storage.ping().await.is_ok() {
        "up"
    } else {
        "down"
    };
    Json(json!({
        "status": "ready",
        "redis": redis,
        "redis_breaker": state.storage.breaker_state().label(),
        "data_version": state.generation.current(),
    }))
    .into_response()
}
