//! `GET /`: what this service is and what it serves.

use axum::Json;
use axum::response::IntoResponse;
use http::header;
use serde_json::{Value, json};

use crate::params::MAX_STATIONS;

pub(super) async fn describe() -> impl IntoResponse {
    let stations = format!("a station id, or up to {MAX_STATIONS} comma-separated");
    let area = json!({
        "id_entity": stations,
        "bbox": "minLon,minLat,maxLon,maxLat (degrees)",
        "near": "lat,lon (degrees), with radius_km",
        "radius_km": "distance from near, in km",
        "format": "json (default), geojson, csv or ndjson; or by Accept"
    });
    let description = Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "description": env!("CARGO_PKG_DESCRIPTION"),
        "units": "concentrations in µg/m³, CO in mg/m³; times in UTC (RFC 3339)",
        "openapi": "/openapi.json",
        "docs": "/docs",
        "endpoints": [
            endpoint("/air_quality", "Measurements ordered by time_instant, then id_entity; streamed. With limit, a page and a Link to the next.", json!({
                "id_entity": stations,
                "from": "ISO 8601 date or date-time, inclusive (UTC unless an offset is given)",
                "to": "ISO 8601 date or date-time, exclusive",
                "order": "asc (default) or desc",
                "limit": "1 to QUERY_MAX_LIMIT rows per page",
                "cursor": "from the Link of the previous page",
                "format": "json (default), csv or ndjson; or by Accept"
            })),
            endpoint("/stations", "The stations, with coordinates and the span of their measurements.", area.clone()),
            endpoint("/stations/{id_entity}", "One station.", json!({ "format": "json (default), geojson, csv or ndjson; or by Accept" })),
            endpoint("/air_quality/latest", "Per station, the latest reading of each pollutant, each with its time.", area.clone()),
            endpoint("/air_quality/aggregates", "Per station and hour, day, week or month: count, expected, coverage, and per pollutant mean, min, max and p95.", json!({
                "interval": "hour, day, week or month (required)",
                "from": "start, inclusive (default: the data's)",
                "to": "end, exclusive (default: the data's)",
                "id_entity": stations,
                "tz": "IANA time zone of the buckets (default: each station's own)",
                "format": "json (default), csv or ndjson; or by Accept"
            })),
            endpoint("/air_quality/aqi", "Per station, the current Air Quality Index, its category, each pollutant's sub-index and the dominant pollutant.", {
                let mut parameters = area;
                parameters["standard"] = json!("eaqi (default) or us-epa");
                parameters
            }),
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

/// One public endpoint: every one answers GET and HEAD, with ETag,
/// Last-Modified and conditional requests (304).
fn endpoint(path: &str, description: &str, parameters: Value) -> Value {
    json!({
        "path": path,
        "methods": ["GET", "HEAD"],
        "description": description,
        "parameters": parameters,
    })
}
