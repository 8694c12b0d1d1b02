//! `X-Request-Id`: every request has one. A client's (or api-cache's) id is
//! kept when it is 1 to 128 characters of letters, digits and `-_.:`;
//! otherwise a UUID v4 is made. The id is on the request (so a proxy passes
//! it on), in the log span of everything the request logs, and on the response.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderName, HeaderValue};
use tracing::Instrument;

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Middleware: keeps or makes the id, logs within its span, returns it.
pub async fn ensure_request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&HEADER)
        .filter(|value| acceptable(value))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
                .unwrap_or(HeaderValue::from_static("-"))
        });
    request.headers_mut().insert(HEADER, id.clone());
    let span = tracing::info_span!("request", request_id = id.to_str().unwrap_or("-"));
    let mut response = next.run(request).instrument(span).await;
    response.headers_mut().insert(HEADER, id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_bounded_ids_are_kept() {
        assert!(acceptable(&HeaderValue::from_static("3f2a-9c:edge.7_x")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("has space")));
        assert!(!acceptable(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
    }
}
