//! Building the responses of the proxied paths.
//!
//! From an entry: the client gets the stored body gzip-encoded if it accepts
//! gzip, decoded otherwise (`Vary: Accept-Encoding` either way, and a weak ETag
//! on the encoded form); a conditional request that matches gets 304. Every
//! response carries `Age`, `Cache-Status`, `X-Cache` and `Via`.

use std::time::SystemTime;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use service_kit::Problem;
use service_kit::conditional::is_not_modified;

use super::Outcome;
use super::read::ReadRequest;
use crate::cache::encoding::{Encoding, accepts_gzip, gunzip};
use crate::cache::entry::StoredResponse;
use crate::cache::status::CacheStatus;
use crate::error::ProxyError;
use crate::headers::{VIA, end_to_end};
use crate::origin::{OriginError, OriginResponse};

/// How the response was produced.
#[derive(Debug, Clone)]
pub(super) struct Served {
    pub status: CacheStatus,
    pub outcome: Outcome,
}

/// Fields a 304 carries (RFC 9110 15.4.5), besides this cache's own.
const NOT_MODIFIED_FIELDS: &[&str] = &["cache-control", "content-location", "date", "expires"];

/// Answers from an entry.
pub(super) fn entry(entry: &StoredResponse, request: &ReadRequest, served: Served) -> Response {
    let encoded = entry.encoding == Encoding::Gzip && accepts_gzip(&request.headers);
    // The gzip form is a transformation of the origin's representation: its
    // ETag is weak (as web servers do), so conditional requests still match.
    let etag = entry
        .etag()
        .map(|tag| if encoded { tag.weakened() } else { tag });
    let not_modified = (200..300).contains(&entry.status)
        && is_not_modified(&request.headers, etag.as_ref(), entry.last_modified());

    let (status, body) = if not_modified {
        (StatusCode::NOT_MODIFIED, bytes::Bytes::new())
    } else if encoded || entry.encoding == Encoding::Identity {
        (
            StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK),
            entry.body.clone(),
        )
    } else {
        match gunzip(
            &entry.body,
            usize::try_from(entry.identity_length).unwrap_or(usize::MAX),
        ) {
            Ok(body) => (
                StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK),
                body,
            ),
            Err(error) => {
                tracing::error!(key = %request.primary, %error, "a stored body cannot be decoded");
                return problem(
                    StatusCode::BAD_GATEWAY,
                    "The stored response is unreadable.",
                    &served.status,
                    Outcome::Error,
                );
            }
        }
    };

    let mut headers = HeaderMap::new();
    for (name, value) in &entry.headers {
        let keep = match name.as_str() {
            // Surrogate keys are for this cache's purges, not for clients.
            "etag" | "vary" | "surrogate-key" => false,
            _ if not_modified => NOT_MODIFIED_FIELDS.contains(&name.as_str()),
            _ => true,
        };
        if keep {
            append(&mut headers, name, value);
        }
    }
    if let Some(etag) = &etag {
        append(&mut headers, "etag", &etag.to_string());
    }
    let mut vary: Vec<String> = entry
        .headers
        .iter()
        .filter(|(name, _)| name == "vary")
        .flat_map(|(_, value)| value.split(',').map(|v| v.trim().to_owned()))
        .filter(|v| !v.is_empty())
        .collect();
    if entry.encoding == Encoding::Gzip
        && !vary
            .iter()
            .any(|v| v.eq_ignore_ascii_case("accept-encoding"))
    {
        vary.push("Accept-Encoding".to_owned());
    }
    if !vary.is_empty() {
        append(&mut headers, "vary", &vary.join(", "));
    }
    if encoded && !not_modified {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let age = entry.timing.current_age(SystemTime::now()).as_secs();
    headers.insert(header::AGE, HeaderValue::from(age));
    if request.head && !not_modified {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    let body = if request.head || not_modified {
        Body::empty()
    } else {
        Body::from(body)
    };
    finish(status, headers, body, &served)
}

/// Passes an origin response through as it streams (not held in memory).
pub(super) fn stream(response: OriginResponse, head: bool, served: Served) -> Response {
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
    finish(response.status, headers, body, &served)
}

/// Passes a forwarded response (other methods) through as it streams.
pub(super) fn passed(mut response: reqwest::Response, served: Served) -> Response {
    let status = response.status();
    let origin_headers = std::mem::take(response.headers_mut());
    let mut headers = HeaderMap::new();
    for (name, value) in end_to_end(&origin_headers) {
        append(&mut headers, &name, &value);
    }
    if let Some(length) = origin_headers.get(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, length.clone());
    }
    finish(
        status,
        headers,
        Body::from_stream(response.bytes_stream()),
        &served,
    )
}

/// A problem answered by the cache itself.
pub(super) fn problem(
    status: StatusCode,
    detail: &str,
    cache_status: &CacheStatus,
    outcome: Outcome,
) -> Response {
    let response = Problem::new(status).with_detail(detail).into_response();
    with_cache_headers(
        response,
        &Served {
            status: cache_status.clone(),
            outcome,
        },
    )
}

/// The 502/504 problem for a failed origin.
pub(super) fn origin_error(error: OriginError, cache_status: &CacheStatus) -> Response {
    let response = ProxyError::Origin(error).into_response();
    with_cache_headers(
        response,
        &Served {
            status: cache_status.clone(),
            outcome: Outcome::Error,
        },
    )
}

fn finish(status: StatusCode, headers: HeaderMap, body: Body, served: &Served) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    with_cache_headers(response, served)
}

fn with_cache_headers(mut response: Response, served: &Served) -> Response {
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&served.status.header_value()) {
        headers.insert("cache-status", value);
    }
    headers.insert(
        "x-cache",
        HeaderValue::from_static(served.outcome.x_cache()),
    );
    headers.append(header::VIA, HeaderValue::from_static(VIA));
    response
}

fn append(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.append(name, value);
    }
}
