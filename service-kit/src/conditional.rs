//! Conditional requests (RFC 9110 section 13): entity tags and the
//! `If-None-Match` / `If-Modified-Since` evaluation both services apply before
//! answering a GET or HEAD with 304 Not Modified.

use std::time::SystemTime;

use http::{HeaderMap, header};

/// An entity tag: `"opaque"` or weak `W/"opaque"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityTag {
    pub weak: bool,
    pub opaque: String,
}

impl EntityTag {
    pub fn strong(opaque: impl Into<String>) -> Self {
        Self {
            weak: false,
            opaque: opaque.into(),
        }
    }

    /// Parses one tag; `None` for anything malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let (weak, quoted) = match text.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let opaque = quoted.strip_prefix('"')?.strip_suffix('"')?;
        if opaque.contains('"') {
            return None;
        }
        Some(Self {
            weak,
            opaque: opaque.to_owned(),
        })
    }

    /// The same tag, weak (a transformed representation, e.g. gzip-encoded).
    pub fn weakened(&self) -> Self {
        Self {
            weak: true,
            opaque: self.opaque.clone(),
        }
    }

    /// Weak comparison (used by If-None-Match): the opaque parts are equal.
    pub fn weak_eq(&self, other: &Self) -> bool {
        self.opaque == other.opaque
    }
}

impl std::fmt::Display for EntityTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.weak {
            write!(f, "W/\"{}\"", self.opaque)
        } else {
            write!(f, "\"{}\"", self.opaque)
        }
    }
}

/// Splits a list of entity tags, respecting quotes (`"a,b", W/"c"`).
fn tag_list(value: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(value[start..].trim());
    items.into_iter().filter(|i| !i.is_empty()).collect()
}

/// Whether a GET/HEAD with these request headers may be answered 304 for a
/// representation with this `etag` and `last_modified` (RFC 9110 13.2.2:
/// If-None-Match first; If-Modified-Since only without it).
pub fn is_not_modified(
    request: &HeaderMap,
    etag: Option<&EntityTag>,
    last_modified: Option<SystemTime>,
) -> bool {
    let if_none_match: Vec<&str> = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(tag_list)
        .collect();
    if !if_none_match.is_empty() {
        let Some(etag) = etag else {
            return false;
        };
        return if_none_match
            .iter()
            .any(|t| *t == "*" || EntityTag::parse(t).is_some_and(|t| t.weak_eq(etag)));
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok());
    match (since, last_modified) {
        (Some(since), Some(modified)) => truncate_to_seconds(modified) <= since,
        _ => false,
    }
}

/// HTTP dates have whole seconds.
pub fn truncate_to_seconds(time: SystemTime) -> SystemTime {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds)
}

/// An HTTP date header value.
pub fn http_date(time: SystemTime) -> String {
    httpdate::fmt_http_date(time)
}

/// Parses an HTTP date header value.
pub fn parse_http_date(value: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(value.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    fn request(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn entity_tags_parse_and_print() {
        assert_eq!(EntityTag::parse("\"v1\""), Some(EntityTag::strong("v1")));
        assert_eq!(
            EntityTag::parse("W/\"v1\"").unwrap().to_string(),
            "W/\"v1\""
        );
        assert_eq!(EntityTag::parse("v1"), None);
        assert_eq!(EntityTag::parse("\"a\"b\""), None);
    }

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let tag = EntityTag::strong("7-abc");
        for value in ["\"7-abc\"", "W/\"7-abc\"", "\"x\", \"7-abc\"", "*"] {
            assert!(
                is_not_modified(&request(&[("if-none-match", value)]), Some(&tag), None),
                "{value}"
            );
        }
        assert!(!is_not_modified(
            &request(&[("if-none-match", "\"8-abc\"")]),
            Some(&tag),
            None
        ));
        assert!(!is_not_modified(
            &request(&[("if-none-match", "\"7-abc\"")]),
            None,
            None
        ));
    }

    #[test]
    fn if_modified_since_applies_only_without_if_none_match() {
        let modified = SystemTime::UNIX_EPOCH + Duration::from_millis(1_500_000_000_900);
        let same_second = http_date(modified);
        let earlier = http_date(modified - Duration::from_secs(10));
        assert!(is_not_modified(
            &request(&[("if-modified-since", &same_second)]),
            None,
            Some(modified)
        ));
        assert!(!is_not_modified(
            &request(&[("if-modified-since", &earlier)]),
            None,
            Some(modified)
        ));
        let tag = EntityTag::strong("new");
        let both = request(&[
            ("if-none-match", "\"old\""),
            ("if-modified-since", &same_second),
        ]);
        assert!(
            !is_not_modified(&both, Some(&tag), Some(modified)),
            "If-None-Match decides"
        );
        assert!(!is_not_modified(
            &request(&[("if-modified-since", "yesterday")]),
            None,
            Some(modified)
        ));
    }
}
