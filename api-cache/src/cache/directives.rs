//! `Cache-Control` directives (RFC 9111 section 5.2), of requests and responses.
//!
//! Unknown directives are ignored; a directive with a malformed number is read
//! the safe way (a bad `max-age` as 0, that is stale at once). Qualified forms
//! such as `no-cache="Set-Cookie"` or `private="x"` are read as the unqualified
//! directive: stricter, never wrong for a shared cache.

use http::{HeaderMap, header};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CacheControl {
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    /// `must-revalidate`, or `proxy-revalidate` (which binds shared caches alike).
    pub(crate) must_revalidate: bool,
    /// Request: `max-stale` (`Some(None)` = any staleness).
    pub(crate) max_stale: Option<Option<u64>>,
    /// Request: `min-fresh`.
    pub(crate) min_fresh: Option<u64>,
    /// Request: `only-if-cached`.
    pub(crate) only_if_cached: bool,
    /// RFC 5861.
    pub(crate) stale_while_revalidate: Option<u64>,
    /// RFC 5861.
    pub(crate) stale_if_error: Option<u64>,
    /// The content must not be transformed (not even its content coding).
    pub(crate) no_transform: bool,
}

impl CacheControl {
    /// Parses every `Cache-Control` line of `headers`. For requests without one,
    /// `Pragma: no-cache` means `no-cache` (HTTP/1.0 clients).
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let lines: Vec<&str> = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if lines.is_empty() {
            let pragma_no_cache = headers
                .get_all(header::PRAGMA)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| {
                    v.split(',')
                        .any(|d| d.trim().eq_ignore_ascii_case("no-cache"))
                });
            return Self {
                no_cache: pragma_no_cache,
                ..Self::default()
            };
        }
        Self::parse(&lines.join(","))
    }

    /// Parses one (possibly combined) header value.
    pub(crate) fn parse(value: &str) -> Self {
        let mut cc = Self::default();
        for (name, argument) in directives(value) {
            let seconds = || argument.as_deref().map(parse_seconds);
            match name.as_str() {
                "max-age" => cc.max_age = Some(seconds().unwrap_or(0)),
                "s-maxage" => cc.s_maxage = Some(seconds().unwrap_or(0)),
                "no-store" => cc.no_store = true,
                "no-cache" => cc.no_cache = true,
                "private" => cc.private = true,
                "public" => cc.public = true,
                "must-revalidate" | "proxy-revalidate" => cc.must_revalidate = true,
                "max-stale" => cc.max_stale = Some(argument.as_deref().map(parse_seconds)),
                "min-fresh" => cc.min_fresh = Some(seconds().unwrap_or(0)),
                "only-if-cached" => cc.only_if_cached = true,
                "stale-while-revalidate" => {
                    cc.stale_while_revalidate = Some(seconds().unwrap_or(0));
                }
                "stale-if-error" => cc.stale_if_error = Some(seconds().unwrap_or(0)),
                "no-transform" => cc.no_transform = true,
                _ => {}
            }
        }
        cc
    }
}

/// Delta-seconds; an unreadable value counts as 0, a huge one saturates.
fn parse_seconds(text: &str) -> u64 {
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return 0;
    }
    digits.parse().unwrap_or(u64::from(u32::MAX))
}

/// `name[=token|"quoted"]` items, names lower-cased, split on commas outside quotes.
fn directives(value: &str) -> Vec<(String, Option<String>)> {
    let mut items = Vec::new();
    let (mut start, mut quoted) = (0, false);
    let bytes = value.as_bytes();
    for i in 0..=bytes.len() {
        let at_end = i == bytes.len();
        if !at_end && bytes[i] == b'"' {
            quoted = !quoted;
        }
        if at_end || (bytes[i] == b',' && !quoted) {
            let item = value[start..i].trim();
            start = i + 1;
            if item.is_empty() {
                continue;
            }
            let (name, argument) = match item.split_once('=') {
                Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"').to_owned())),
                None => (item, None),
            };
            items.push((name.to_ascii_lowercase(), argument));
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn reads_response_directives() {
        let cc = CacheControl::parse("public, max-age=60, s-maxage=\"120\", must-revalidate");
        assert_eq!(cc.max_age, Some(60));
        assert_eq!(cc.s_maxage, Some(120));
        assert!(cc.public && cc.must_revalidate && !cc.private);
        let cc = CacheControl::parse("No-Store, PRIVATE=\"Set-Cookie, X\", no-cache=\"a\"");
        assert!(cc.no_store && cc.private && cc.no_cache);
        assert!(CacheControl::parse("proxy-revalidate").must_revalidate);
        assert_eq!(
            CacheControl::parse("stale-if-error=300").stale_if_error,
            Some(300)
        );
    }

    #[test]
    fn malformed_numbers_are_read_the_safe_way() {
        assert_eq!(CacheControl::parse("max-age=abc").max_age, Some(0));
        assert_eq!(CacheControl::parse("max-age=-5").max_age, Some(0));
        assert_eq!(CacheControl::parse("max-age").max_age, Some(0));
        assert_eq!(
            CacheControl::parse("max-age=99999999999999999999").max_age,
            Some(u64::from(u32::MAX))
        );
    }

    #[test]
    fn reads_request_directives_and_pragma() {
        let cc = CacheControl::parse("max-age=0, min-fresh=5, max-stale, only-if-cached");
        assert_eq!(
            (cc.max_age, cc.min_fresh, cc.max_stale),
            (Some(0), Some(5), Some(None))
        );
        assert!(cc.only_if_cached);
        assert_eq!(
            CacheControl::parse("max-stale=30").max_stale,
            Some(Some(30))
        );
        let mut headers = HeaderMap::new();
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(CacheControl::from_headers(&headers).no_cache);
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=10"),
        );
        assert!(
            !CacheControl::from_headers(&headers).no_cache,
            "Cache-Control wins over Pragma"
        );
    }

    #[test]
    fn several_header_lines_combine() {
        let mut headers = HeaderMap::new();
        headers.append(header::CACHE_CONTROL, HeaderValue::from_static("public"));
        headers.append(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        let cc = CacheControl::from_headers(&headers);
        assert!(cc.public);
        assert_eq!(cc.max_age, Some(5));
    }
}
