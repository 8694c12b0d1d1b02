//! `POST /_cache/purge`: removes (or, with `"soft": true`, marks stale) what is
//! stored for one URL (every variant), for every URL under a path prefix, or
//! for every URL whose response carried a surrogate key:
//!
//! ```text
//! curl -X POST localhost:8080/_cache/purge -H "Authorization: Bearer $CACHE_PURGE_TOKEN" \
//!      -d '{"url": "/air_quality?id_entity=aq_jaen"}'      # or {"prefix": "/air_quality"}
//!                                                          # or {"surrogate_key": "aq_jaen", "soft": true}
//! ```
//!
//! Prefixes and surrogate keys are exact-match tag sets in Redis (no scans).
//! A soft purge keeps entries for their grace period: the next request
//! revalidates them, and they still answer if the origin is down. The
//! endpoint answers 404 while `CACHE_PURGE_TOKEN` is unset.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use service_kit::Problem;

use super::AppState;
use crate::cache::key::{NormalizedTarget, UrlKey};
use crate::storage::Tag;

pub(super) const PATH: &str = "/_cache/purge";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: Option<String>,
    prefix: Option<String>,
    surrogate_key: Option<String>,
    #[serde(default)]
    soft: bool,
}

/// Compares in time independent of where the inputs differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn bad_request(detail: &str) -> Response {
    Problem::typed(
        StatusCode::BAD_REQUEST,
        "invalid-purge",
        "Invalid purge request",
    )
    .with_detail(detail)
    .into_response()
}

pub(super) async fn purge(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(token) = &state.purge_token else {
        return Problem::new(StatusCode::NOT_FOUND)
            .with_detail("Purging is disabled: CACHE_PURGE_TOKEN is not set.")
            .into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_secret(presented.as_bytes(), token.expose_secret().as_bytes()) {
        let mut response = Problem::new(StatusCode::UNAUTHORIZED)
            .with_detail("A valid bearer token is required.")
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"api-cache\""),
        );
        return response;
    }
    let request: PurgeRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(&format!("expected a JSON object: {error}")),
    };
    let soft = request.soft;
    let (kind, result) = match (request.url, request.prefix, request.surrogate_key) {
        (Some(url), None, None) => {
            let Some(target) = target_of(&url) else {
                return bad_request("url must be a path (with its query), or an http(s) URL");
            };
            let url = UrlKey::of(&target);
            let result = if soft {
                state.storage.mark_stale(url).await
            } else {
                state.storage.invalidate(url).await
            };
            ("url", result.map(|n| usize::from(n > 0)))
        }
        (None, Some(prefix), None) => {
            if !prefix.starts_with('/') {
                return bad_request("prefix must be a path starting with /");
            }
            let trimmed = if prefix.len() > 1 {
                prefix.trim_end_matches('/')
            } else {
                "/"
            };
            let tag = Tag::Path(trimmed.to_owned());
            ("prefix", state.storage.purge_tag(&tag, soft).await)
        }
        (None, None, Some(key)) if !key.is_empty() && !key.contains(char::is_whitespace) => (
            "surrogate_key",
            state.storage.purge_tag(&Tag::SurrogateKey(key), soft).await,
        ),
        _ => return bad_request("give exactly one of url, prefix or surrogate_key"),
    };
    match result {
        Ok(purged) => {
            state.metrics.purge(kind, soft);
            tracing::info!(kind, soft, purged, "purge");
            Json(json!({ "purged": purged, "soft": soft })).into_response()
        }
        Err(error) => {
            tracing::warn!(%error, "purge failed");
            Problem::new(StatusCode::SERVICE_UNAVAILABLE)
                .with_detail("Redis is unavailable; nothing was purged.")
                .into_response()
        }
    }
}

/// `/path?query` or an absolute http(s) URL, as the cache keys it.
fn target_of(url: &str) -> Option<NormalizedTarget> {
    if url.starts_with('/') {
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (url, None),
        };
        return Some(NormalizedTarget::new(path, query));
    }
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https")
        .then(|| NormalizedTarget::new(parsed.path(), parsed.query()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"tok", b"token"));
    }

    #[test]
    fn purge_targets_are_keyed_like_requests() {
        assert_eq!(
            target_of("/air_quality?b=1&a=2"),
            Some(NormalizedTarget::new("/air_quality", Some("a=2&b=1")))
        );
        assert_eq!(
            target_of("http://host:8080/x?y=1"),
            Some(NormalizedTarget::new("/x", Some("y=1")))
        );
        assert_eq!(target_of("ftp://host/x"), None);
        assert_eq!(target_of("x"), None);
    }
}
