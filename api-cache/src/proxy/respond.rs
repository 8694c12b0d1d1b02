//! Building the responses of the proxied paths. Every one carries
//! `Cache-Status`, `X-Cache` and `Via`; answers from an entry also `Age`.
//!
//! From an entry, the client gets the representation it accepts (gzip or
//! identity, both prepared in the entry, see `cache::entry`), or 304 when its
//! own validators match.

use std::time::SystemTime;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use service_kit::Problem;
use service_kit::conditional::is_not_modified;

use super::request::ReadRequest;
use crate::cache::entry::{Entry, set_cache_headers};
use crate::cache::status::{CACHE_STATUS, CacheStatus, Outcome, X_CACHE};
use crate::cache::target::TargetError;
use crate::error::ProxyError;
use crate::headers::{VIA, end_to_end};
use crate::origin::{OriginError, OriginResponse};
use crate::routes::AppState;

/// Answers from an entry.
pub(super) fn entry(
    entry: &Entry,
    request: &ReadRequest,
    status: &CacheStatus,
    outcome: Outcome,
    now: SystemTime,
) -> Response {
    let representation = entry.representation(request.gzip);
    let age = entry.age(now);
    let stored_status = entry.stored().status;
    if (200..300).contains(&stored_status)
        && is_conditional(&request.headers)
        && is_not_modified(
            &request.headers,
            representation.etag.as_ref(),
            entry.last_modified(),
        )
    {
        let mut headers = entry.not_modified_headers(representation);
        set_cache_headers(&mut headers, age, status, outcome.x_cache());
        return with_parts(StatusCode::NOT_MODIFIED, headers, Body::empty());
    }
    let headers = representation.headers_for(age, status, outcome.x_cache());
    let body = if request.head {
        Body::empty()
    } else {
        Body::from(representation.body.clone())
    };
    let status = StatusCode::from_u16(stored_status).unwrap_or(StatusCode::OK);
    with_parts(status, headers, body)
}

fn is_conditional(request: &HeaderMap) -> bool {
    request.contains_key(header::IF_NONE_MATCH) || request.contains_key(header::IF_MODIFIED_SINCE)
}

/// Passes an origin response through as it streams (not held in memory).
pub(super) fn stream(
    response: OriginResponse,
    head: bool,
    status: &CacheStatus,
    outcome: Outcome,
) -> Response {
    let mut headers = HeaderMap::new();
    for (name, value) in end_to_end(&response.headers) {
        if name != "surrogate-key" {
            append(&mut headers, &name, &value);
        }
    }
    if let Some(length) = response.headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, length.clone());
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(response.body.into_stream())
    };
    with_cache_headers(with_parts(response.status, headers, body), status, outcome)
}

/// Passes a forwarded response (other methods) through as it streams.
pub(super) fn passed(
    mut response: reqwest::Response,
    status: &CacheStatus,
    outcome: Outcome,
) -> Response {
    let code = response.status();
    let origin_headers = std::mem::take(response.headers_mut());
    let mut headers = HeaderMap::new();
    for (name, value) in end_to_end(&origin_headers) {
        append(&mut headers, &name, &value);
    }
    if let Some(length) = origin_headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, length.clone());
    }
    let body = Body::from_stream(response.bytes_stream());
    with_cache_headers(with_parts(code, headers, body), status, outcome)
}

/// 400 for a target that cannot be normalized (see `cache::target`).
pub(super) fn invalid_target(state: &AppState, error: &TargetError) -> Response {
    state.metrics.outcome(Outcome::Bypass);
    let response = Problem::typed(
        StatusCode::BAD_REQUEST,
        "invalid-target",
        "Invalid request target",
    )
    .with_detail(error.to_string())
    .into_response();
    with_cache_headers(
        response,
        &CacheStatus::default().detail("invalid-target"),
        Outcome::Bypass,
    )
}

/// A problem answered by the cache itself.
pub(super) fn problem(
    code: StatusCode,
    detail: &str,
    status: &CacheStatus,
    outcome: Outcome,
) -> Response {
    let response = Problem::new(code).with_detail(detail).into_response();
    with_cache_headers(response, status, outcome)
}

/// The 502/504 problem for a failed origin.
pub(super) fn origin_error(error: OriginError, status: &CacheStatus) -> Response {
    with_cache_headers(
        ProxyError::Origin(error).into_response(),
        status,
        Outcome::Error,
    )
}

fn with_parts(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

fn with_cache_headers(mut response: Response, status: &CacheStatus, outcome: Outcome) -> Response {
    let headers = response.headers_mut();
    headers.insert(CACHE_STATUS, status.header());
    headers.insert(X_CACHE, HeaderValue::from_static(outcome.x_cache()));
    headers.append(header::VIA, HeaderValue::from_static(VIA));
    response
}

fn append(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        http::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.append(name, value);
    }
}
