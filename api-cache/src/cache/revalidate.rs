//! Revalidation (RFC 9111 section 4.3): asking the origin whether a stored
//! response is still good, and refreshing it when the answer is 304.

use std::time::SystemTime;

use http::{HeaderMap, HeaderValue, header};

use super::freshness::{Timing, freshness_lifetime};
use super::policy::Policy;
use super::stored::StoredResponse;
use crate::headers::end_to_end;

/// `If-None-Match` / `If-Modified-Since` built from the stored validators.
pub(crate) fn conditional_headers(stored: &StoredResponse) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(etag) = stored
        .header("etag")
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::IF_NONE_MATCH, etag);
    }
    if let Some(modified) = stored
        .header("last-modified")
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::IF_MODIFIED_SINCE, modified);
    }
    headers
}

/// The stored response updated by a 304 (RFC 9111 4.3.4): each header field the
/// 304 carries replaces the stored one of that name; the clocks and the
/// lifetime are those of the new exchange. The body is unchanged.
pub(crate) fn refreshed(
    stored: &StoredResponse,
    not_modified: &HeaderMap,
    request_time: SystemTime,
    response_time: SystemTime,
    policy: &Policy,
) -> StoredResponse {
    let update = end_to_end(not_modified);
    let mut headers: Vec<(String, String)> = stored
        .headers
        .iter()
        .filter(|(name, _)| !update.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
        .cloned()
        .collect();
    headers.extend(update.into_iter().filter(|(name, _)| {
        !matches!(name.as_str(), "content-encoding" | "age" | "content-length")
    }));
    let mut refreshed = StoredResponse {
        headers,
        timing: Timing::from_response(request_time, response_time, not_modified),
        ..stored.clone()
    };
    let merged = refreshed.header_map();
    let lifetime = freshness_lifetime(
        stored.status,
        &refreshed.cache_control(),
        &merged,
        &refreshed.timing,
        policy.default_ttl,
    );
    refreshed.lifetime_ms = u64::try_from(lifetime.duration().as_millis()).unwrap_or(u64::MAX);
    refreshed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::encoding::Encoding;
    use bytes::Bytes;
    use std::time::{Duration, UNIX_EPOCH};

    fn stored() -> StoredResponse {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        StoredResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("cache-control".into(), "max-age=10".into()),
                ("etag".into(), "\"v1\"".into()),
                (
                    "last-modified".into(),
                    "Tue, 14 Nov 2023 22:13:20 GMT".into(),
                ),
                ("x-kept".into(), "1".into()),
            ],
            body: Bytes::from_static(b"body"),
            encoding: Encoding::Identity,
            identity_length: 4,
            timing: Timing {
                request_time: at,
                response_time: at,
                date: None,
                age_value: 0,
            },
            lifetime_ms: 10_000,
            vary: vec![],
            shared_with_credentials: false,
            generation: 0,
        }
    }

    #[test]
    fn conditional_headers_carry_both_validators() {
        let headers = conditional_headers(&stored());
        assert_eq!(headers[header::IF_NONE_MATCH], "\"v1\"");
        assert_eq!(
            headers[header::IF_MODIFIED_SINCE],
            "Tue, 14 Nov 2023 22:13:20 GMT"
        );
    }

    #[test]
    fn a_304_replaces_the_fields_it_carries_and_restarts_the_clock() {
        let mut not_modified = HeaderMap::new();
        not_modified.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=60"),
        );
        not_modified.insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        not_modified.insert(header::CONNECTION, HeaderValue::from_static("close"));
        let later = UNIX_EPOCH + Duration::from_secs(1_700_000_100);
        let policy = Policy {
            default_ttl: Duration::from_secs(30),
            grace: Duration::ZERO,
            max_body_bytes: 100,
            compress: true,
            stale_while_revalidate: Duration::ZERO,
        };
        let refreshed = refreshed(&stored(), &not_modified, later, later, &policy);
        assert_eq!(refreshed.header("cache-control"), Some("max-age=60"));
        assert_eq!(refreshed.header("x-kept"), Some("1"));
        assert_eq!(refreshed.header("connection"), None);
        assert_eq!(refreshed.lifetime(), Duration::from_secs(60));
        assert_eq!(refreshed.timing.response_time, later);
        assert_eq!(refreshed.body, stored().body);
        assert_eq!(
            refreshed
                .headers
                .iter()
                .filter(|(n, _)| n == "etag")
                .count(),
            1
        );
    }
}
