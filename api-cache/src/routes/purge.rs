//! `POST /_cache/purge`, on the admin port: removes (or, with `"soft": true`,
//! marks stale) what is stored for one URL (every variant), for every URL
//! under a path prefix, or for every URL whose response carried a surrogate
//! key:
//!
//! ```text
//! curl -X POST localhost:9090/_cache/purge -H "Authorization: Bearer $CACHE_PURGE_TOKEN" \
//!      -d '{"url": "/air_quality?id_entity=aq_jaen"}'      # or {"prefix": "/air_quality"}
//!                                                          # or {"surrogate_key": "aq_jaen", "soft": true}
//! ```
//!
//! Prefixes and surrogate keys are tag sets in Redis (no scans), walked a page
//! at a time. Prefixes are tags from one to `MAX_PREFIX_DEPTH` segments deep;
//! the root is not one. A soft purge keeps entries for their grace period: the
//! next request revalidates them, and they still answer if the origin is down.
//!
//! The token is checked before the body is read, and the body is bounded
//! ([`MAX_BODY_BYTES`]). The endpoint answers 404 while `CACHE_PURGE_TOKEN` is
//! unset.

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;
use service_kit::Problem;

use super::AppState;
use crate::cache::key::UrlKey;
use crate::cache::target::Target;
use crate::storage::{MAX_PREFIX_DEPTH, MAX_TAG_BYTES, Tag};

pub(super) const PATH: &str = "/_cache/purge";

/// The largest purge request body.
const MAX_BODY_BYTES: usize = 16 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PurgeRequest {
    url: Option<String>,
    prefix: Option<String>,
    surrogate_key: Option<String>,
    #[serde(default)]
    soft: bool,
}

/// Whether `given` is `expected`, in a time that depends on `expected`'s
/// length only: not on where, nor whether, the inputs differ.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = given.len() ^ expected.len();
    for (i, byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(!byte);
        difference |= usize::from(other ^ byte);
    }
    difference == 0
}

fn problem(status: StatusCode, detail: &str) -> Response {
    Problem::typed(status, "invalid-purge", "Invalid purge request")
        .with_detail(detail)
        .into_response()
}

fn bad_request(detail: &str) -> Response {
    problem(StatusCode::BAD_REQUEST, detail)
}

pub(super) async fn purge(State(state): State<AppState>, request: Request) -> Response {
    let Some(token) = &state.purge_token else {
        return Problem::new(StatusCode::NOT_FOUND)
            .with_detail("Purging is disabled: CACHE_PURGE_TOKEN is not set.")
            .into_response();
    };
    let (parts, body) = request.into_parts();
    if !authorized(&parts.headers, token.expose_secret()) {
        return unauthorized();
    }
    let request = match read(body).await {
        Ok(request) => request,
        Err(response) => return response,
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
        (None, Some(prefix), None) => match prefix_tag(&prefix) {
            Ok(tag) => ("prefix", state.storage.purge_tag(&tag, soft).await),
            Err(detail) => return bad_request(&detail),
        },
        (None, None, Some(key))
            if !key.is_empty()
                && key.len() <= MAX_TAG_BYTES
                && !key.contains(char::is_whitespace) =>
        {
            let tag = Tag::SurrogateKey(key);
            ("surrogate_key", state.storage.purge_tag(&tag, soft).await)
        }
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

fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    same_secret(presented.as_bytes(), token.as_bytes())
}

fn unauthorized() -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED)
        .with_detail("A valid bearer token is required.")
        .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"api-cache\""),
    );
    response
}

/// The request's JSON body, at most [`MAX_BODY_BYTES`].
async fn read(body: Body) -> Result<PurgeRequest, Response> {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        let detail = format!("the body is larger than {MAX_BODY_BYTES} bytes");
        return Err(problem(StatusCode::PAYLOAD_TOO_LARGE, &detail));
    };
    serde_json::from_slice(&bytes)
        .map_err(|error| bad_request(&format!("expected a JSON object: {error}")))
}

/// The tag of a path prefix, normalized as requests are.
fn prefix_tag(prefix: &str) -> Result<Tag, String> {
    let path = Target::parse(prefix, None)
        .map_err(|error| format!("prefix: {error}"))?
        .path()
        .trim_end_matches('/')
        .to_owned();
    let depth = path.split('/').skip(1).count();
    if path.is_empty() {
        return Err(
            "the root is not a prefix that can be purged: every URL is under it; \
                    purge by surrogate key, or change CACHE_KEY_PREFIX to start afresh"
                .to_owned(),
        );
    }
    if depth > MAX_PREFIX_DEPTH || path.len() > MAX_TAG_BYTES {
        return Err(format!(
            "prefixes go at most {MAX_PREFIX_DEPTH} segments and {MAX_TAG_BYTES} bytes deep"
        ));
    }
    Ok(Tag::Path(path))
}

/// `/path?query` or an absolute http(s) URL, as the cache keys it.
fn target_of(url: &str) -> Option<Target> {
    if url.starts_with('/') {
        let (path, query) = match url.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (url, None),
        };
        return Target::parse(path, query).ok();
    }
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    Target::parse(parsed.path(), parsed.query()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"token", b"token"));
        assert!(!same_secret(b"token", b"tokem"));
        assert!(!same_secret(b"tok", b"token"));
        assert!(!same_secret(b"token-and-more", b"token"));
        assert!(!same_secret(b"", b"token"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn prefixes_are_normalized_and_bounded() {
        assert_eq!(
            prefix_tag("/air_quality/"),
            Ok(Tag::Path("/air_quality".into()))
        );
        assert_eq!(prefix_tag("/a/./b/../c"), Ok(Tag::Path("/a/c".into())));
        assert!(prefix_tag("/").is_err(), "the root");
        assert!(prefix_tag("/a/b/c/d/e").is_err(), "deeper than tags go");
        assert!(prefix_tag("nope").is_err());
    }

    #[test]
    fn purge_targets_are_keyed_like_requests() {
        assert_eq!(
            target_of("/air_quality?b=1&a=2"),
            Target::parse("/air_quality", Some("a=2&b=1")).ok()
        );
        assert_eq!(
            target_of("http://host:8080/x?y=1"),
            Target::parse("/x", Some("y=1")).ok()
        );
        assert_eq!(target_of("ftp://host/x"), None);
        assert_eq!(target_of("x"), None);
    }
}
