//! `GET /`: what this service is and what it serves.

use axum::Json;
use axum::response::IntoResponse;
use http::header;
use serde_json::json;

use crate::query::MAX_STATIONS;

pub(super) async fn describe() -> impl IntoResponse {
    let description = Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "description": env!("CARGO_PKG_DESCRIPTION"),
        "endpoints": [
            {
                "path": "/air_quality",
                "methods": ["GET", "HEAD"],
                "description": "Measurements as a JSON array ordered by time_instant, then id_entity; streamed. ETag, Last-Modified and conditional requests (304) supported.",
                "parameters": {
                    "id_entity": format!("a station id, or up to {MAX_STATIONS} comma-separated"),
                    "from": "ISO 8601 date or date-time, inclusive (UTC unless an offset is given)",
                    "to": "ISO 8601 date or date-time, exclusive",
                    "order": "asc (default) or desc",
                    "limit": "1 to QUERY_MAX_LIMIT rows"
                }
            }
        ],
        "admin_port": {
            "description": "operators' endpoints, on API_REST_ADMIN_PORT only",
            "endpoints": [
                { "path": "/changes", "methods": ["GET"], "description": "the data version as server-sent events: at once, then on every change" },
                { "path": "/readyz", "methods": ["GET"], "description": "readiness: 200 when the database answers" },
                { "path": "/metrics", "methods": ["GET"], "description": "Prometheus metrics" },
                { "path": "/healthz", "methods": ["GET"], "description": "liveness, no I/O" }
            ]
        }
    }));
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        description,
    )
}
