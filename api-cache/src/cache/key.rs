//! Cache keys: `<prefix>:<xxh3-128 of the normalized path and query, in hex>`.
//!
//! The digest is the same in every process and replica (unlike a per-process
//! randomized hash), and the query is normalized first: parameters are decoded,
//! ordered by name (repeated names keep their relative order) and re-encoded,
//! so `?a=1&b=2`, `?b=2&a=1` and `?b=2&&a=1` share one entry.

use xxhash_rust::xxh3::xxh3_128;

/// A request target in normal form: the path, then `?` and the sorted query if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedTarget(String);

impl NormalizedTarget {
    pub fn new(path: &str, query: Option<&str>) -> Self {
        let mut pairs: Vec<(String, String)> =
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let path = if path.is_empty() { "/" } else { path };
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
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every path prefix of `path` at segment boundaries, shortest first:
/// `/a/b` gives `/`, `/a`, `/a/b` (the purge-by-prefix tags).
pub fn path_prefixes(path: &str) -> Vec<String> {
    let mut prefixes = vec!["/".to_owned()];
    let mut current = String::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        current.push('/');
        current.push_str(segment);
        prefixes.push(current.clone());
    }
    prefixes
}

/// A Redis key for one normalized target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(String);

impl CacheKey {
    pub fn new(prefix: &str, target: &NormalizedTarget) -> Self {
        let digest = xxh3_128(target.as_str().as_bytes());
        Self(format!("{prefix}:{digest:032x}"))
    }

    /// A key next to `base` (`<base>:<suffix>`): its variants, its variant set.
    pub fn derived(base: &CacheKey, suffix: &str) -> Self {
        Self(format!("{}:{suffix}", base.0))
    }

    /// A key read back from Redis (a set member).
    pub fn from_raw(key: String) -> Self {
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str, query: Option<&str>) -> String {
        CacheKey::new("api-cache", &NormalizedTarget::new(path, query)).0
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
