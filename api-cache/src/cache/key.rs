//! Cache keys: the xxh3-128 digest of the normalized path and query (stored in
//! Redis as `<prefix>:<digest in hex>`, see `storage::redis`).
//!
//! The digest is the same in every process and replica (unlike a per-process
//! randomized hash), and the query is normalized first: parameters are decoded,
//! ordered by name (repeated names keep their relative order) and re-encoded,
//! so `?a=1&b=2`, `?b=2&a=1` and `?b=2&&a=1` share one entry.

use xxhash_rust::xxh3::xxh3_128;

/// A request target in normal form: the path, then `?` and the sorted query if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct NormalizedTarget(String);

impl NormalizedTarget {
    pub(crate) fn new(path: &str, query: Option<&str>) -> Self {
        let path = if path.is_empty() { "/" } else { path };
        match query {
            None | Some("") => Self(path.to_owned()),
            // Most queries are written the way they normalize: keep them as they are.
            Some(query) if already_normal(query) => {
                let mut target = String::with_capacity(path.len() + 1 + query.len());
                target.push_str(path);
                target.push('?');
                target.push_str(query);
                Self(target)
            }
            Some(query) => Self::sorted(path, query),
        }
    }

    fn sorted(path: &str, query: &str) -> Self {
        let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if pairs.is_empty() {
            return Self(path.to_owned());
        }
        // A stable sort: `id=a&id=b` may mean something different from `id=b&id=a`.
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&pairs)
            .finish();
        Self(format!("{path}?{query}"))
    }

    /// The path and query to request from the origin.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether re-encoding the sorted pairs of `query` would give `query` back:
/// `name=value` pairs of characters that form encoding keeps as they are,
/// with names in order.
fn already_normal(query: &str) -> bool {
    let mut previous = "";
    for pair in query.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            return false;
        };
        let kept = |text: &str| {
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_'))
        };
        if name.is_empty() || !kept(name) || !kept(value) || name < previous {
            return false;
        }
        previous = name;
    }
    true
}

/// Every path prefix of `path` at segment boundaries, shortest first:
/// `/a/b` gives `/`, `/a`, `/a/b` (the purge-by-prefix tags).
pub(crate) fn path_prefixes(path: &str) -> Vec<String> {
    let mut prefixes = vec!["/".to_owned()];
    let mut current = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        current.push('/');
        current.push_str(segment);
        prefixes.push(current.clone());
    }
    prefixes
}

/// A URL as the cache knows it: the digest of its normalized target, the
/// same in every process and replica (unlike a per-process randomized hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UrlKey(u128);

impl UrlKey {
    pub(crate) fn of(target: &NormalizedTarget) -> Self {
        Self(xxh3_128(target.as_str().as_bytes()))
    }

    pub(crate) fn from_digest(digest: u128) -> Self {
        Self(digest)
    }
}

/// One stored response: a URL's own, or one of its variants when its
/// responses vary (`variant` is the digest of the varied request values).
/// Concurrent requests for the same `EntryKey` share one fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EntryKey {
    pub(crate) url: UrlKey,
    pub(crate) variant: Option<u128>,
}

impl EntryKey {
    pub(crate) fn url(url: UrlKey) -> Self {
        Self { url, variant: None }
    }

    pub(crate) fn variant(url: UrlKey, variant: u128) -> Self {
        Self {
            url,
            variant: Some(variant),
        }
    }
}

impl std::fmt::Display for EntryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.url.0)?;
        if let Some(variant) = self.variant {
            write!(f, ":v:{variant:032x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, query: Option<&str>) -> String {
        format!(
            "api-cache:{}",
            EntryKey::url(UrlKey::of(&NormalizedTarget::new(path, query)))
        )
    }

    #[test]
    fn parameter_order_does_not_change_the_key() {
        assert_eq!(
            key("/air_quality", Some("a=1&b=2")),
            key("/air_quality", Some("b=2&a=1"))
        );
        assert_eq!(
            key("/air_quality", Some("b=2&&a=1&")),
            key("/air_quality", Some("a=1&b=2"))
        );
    }

    #[test]
    fn equivalent_encodings_share_a_key() {
        assert_eq!(
            key("/air_quality", Some("id_entity=aq_jaen,aq_salvia")),
            key("/air_quality", Some("id_entity=aq_jaen%2Caq_salvia"))
        );
        assert_eq!(key("/air_quality", Some("")), key("/air_quality", None));
    }

    #[test]
    fn path_prefixes_stop_at_segment_boundaries() {
        assert_eq!(path_prefixes("/"), ["/"]);
        assert_eq!(path_prefixes("/air_quality"), ["/", "/air_quality"]);
        assert_eq!(path_prefixes("/a/b/"), ["/", "/a", "/a/b"]);
    }

    #[test]
    fn a_query_already_in_normal_form_is_kept_and_any_other_is_normalized() {
        for query in [
            "a=1&b=2",
            "limit=5&order=desc",
            "a=1&a=0",
            "x=&y=z",
            "rows=10",
        ] {
            let normal = NormalizedTarget::new("/p", Some(query));
            assert_eq!(normal, NormalizedTarget::sorted("/p", query), "{query}");
            assert_eq!(normal.as_str(), format!("/p?{query}"));
        }
        for query in [
            "b=1&a=2", "a", "a=1&&b=2", "a=1&", "id=x,y", "a=b=c", "q=a+b", "q=%41",
        ] {
            assert!(!already_normal(query), "{query}");
            let target = NormalizedTarget::new("/p", Some(query));
            assert_eq!(target, NormalizedTarget::sorted("/p", query), "{query}");
        }
    }

    #[test]
    fn different_requests_have_different_keys() {
        assert_ne!(key("/air_quality", None), key("/air_quality/", None));
        assert_ne!(
            key("/air_quality", Some("limit=1")),
            key("/air_quality", Some("limit=2"))
        );
        assert_ne!(
            key("/air_quality", Some("id=a&id=b")),
            key("/air_quality", Some("id=b&id=a"))
        );
    }

    #[test]
    fn the_key_is_stable_across_processes_and_releases() {
        // Computed independently (Python's xxhash.xxh3_128_hexdigest): if this
        // changes, every replica's keys change with it.
        assert_eq!(
            key("/air_quality", None),
            "api-cache:b3231c75c1834b123a585db254cb22c0"
        );
        assert_eq!(key("/air_quality", None).len(), "api-cache:".len() + 32);
        assert_eq!(
            NormalizedTarget::new("/air_quality", Some("order=desc&limit=5")).as_str(),
            "/air_quality?limit=5&order=desc"
        );
    }
}
