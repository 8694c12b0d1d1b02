//! RFC 9457 problem details: every error either service returns is an
//! `application/problem+json` body built here.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use serde_json::{Map, Value};

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem details object. Build it with [`Problem::new`] and the `with_*` methods.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI reference naming the kind of problem; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Extension members (RFC 9457 section 3.2), e.g. `invalid_params`.
    #[serde(flatten)]
    pub extensions: Map<String, Value>,
}

impl Problem {
    /// A problem whose type is `about:blank` and title the status' reason phrase.
    pub fn new(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            extensions: Map::new(),
        }
    }

    /// A problem of a named kind, `urn:air-quality-api:problem:<slug>`.
    pub fn typed(status: StatusCode, slug: &str, title: &str) -> Self {
        Self {
            kind: format!("urn:air-quality-api:problem:{slug}"),
            title: title.to_owned(),
            ..Self::new(status)
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    pub fn with_extension(mut self, name: &str, value: impl Serialize) -> Self {
        // Serializing plain data into a Value cannot fail.
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.extensions.insert(name.to_owned(), value);
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The serialized body, as sent.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = self.to_json();
        (
            status,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            body,
        )
            .into_response()
    }
}

/// A layer that turns a panicking handler into an opaque, logged 500 problem
/// instead of a dropped connection.
pub fn catch_panics()
-> tower_http::catch_panic::CatchPanicLayer<fn(Box<dyn std::any::Any + Send>) -> Response> {
    tower_http::catch_panic::CatchPanicLayer::custom(
        panic_response as fn(Box<dyn std::any::Any + Send>) -> Response,
    )
}

/// Runs a handler's future, turning a panic into the same opaque 500 as
/// [`catch_panics`] (for handlers served outside an axum router).
pub async fn catching(handler: impl std::future::Future<Output = Response>) -> Response {
    use futures_util::FutureExt;
    std::panic::AssertUnwindSafe(handler)
        .catch_unwind()
        .await
        .unwrap_or_else(panic_response)
}

fn panic_response(panic: Box<dyn std::any::Any + Send>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = message, "a request handler panicked");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
        .with_detail("The request could not be completed.")
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_the_rfc_members_and_extensions() {
        let problem = Problem::typed(StatusCode::BAD_REQUEST, "invalid-parameter", "Bad")
            .with_detail("limit must be between 1 and 10")
            .with_extension("invalid_params", [("limit", "0")]);
        let json: Value = serde_json::from_slice(&problem.to_json()).unwrap();
        assert_eq!(
            json["type"],
            "urn:air-quality-api:problem:invalid-parameter"
        );
        assert_eq!(json["status"], 400);
        assert_eq!(json["detail"], "limit must be between 1 and 10");
        assert!(json["invalid_params"].is_array());
        assert!(json.get("instance").is_none());
    }

    async fn boom() -> &'static str {
        panic!("secret detail")
    }

    #[tokio::test]
    async fn a_panicking_handler_becomes_an_opaque_500_problem() {
        use tower::ServiceExt;
        let app = axum::Router::new()
            .route("/", axum::routing::get(boom))
            .layer(catch_panics());
        let request = http::Request::builder()
            .uri("/")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("secret detail"));
    }

    #[test]
    fn responds_with_the_problem_media_type() {
        let response = Problem::new(StatusCode::SERVICE_UNAVAILABLE).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
    }
}
