//! `GET /docs`: Swagger UI on `/openapi.json`, every file served from this
//! binary (the pinned npm package `swagger-ui-dist`, embedded by `build.rs`),
//! so the page works with no internet access; a Content-Security-Policy keeps
//! it to this origin.

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use service_kit::Problem;

const PAGE: &str = include_str!("page.html");
const START: &str = include_str!("start.js");
const BUNDLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js"));
const STYLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css"));
const LICENSE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/LICENSE"));

/// Swagger UI styles itself inline and shows its logo as a data URI.
const POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                      script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

pub(super) async fn page() -> Response {
    if BUNDLE.is_empty() || STYLE.is_empty() {
        return Problem::typed(
            StatusCode::SERVICE_UNAVAILABLE,
            "docs-not-built",
            "Docs page not built",
        )
        .with_detail(
            "This build has no Swagger UI files: run `npm ci --ignore-scripts --prefix \
             api-rest/docs-ui` and build again. The document itself is at /openapi.json.",
        )
        .into_response();
    }
    let mut response = asset("text/html; charset=utf-8", PAGE.as_bytes());
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    response
}

pub(super) async fn file(Path(name): Path<String>) -> Response {
    match name.as_str() {
        "swagger-ui-bundle.js" if !BUNDLE.is_empty() => {
            asset("text/javascript; charset=utf-8", BUNDLE)
        }
        "swagger-ui.css" if !STYLE.is_empty() => asset("text/css; charset=utf-8", STYLE),
        "start.js" => asset("text/javascript; charset=utf-8", START.as_bytes()),
        "LICENSE" if !LICENSE.is_empty() => asset("text/plain; charset=utf-8", LICENSE),
        _ => Problem::new(StatusCode::NOT_FOUND)
            .with_detail("No such file of the docs page.")
            .into_response(),
    }
}

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
