//! Cache keys: the xxh3-128 digest of the normalized target (see `target`),
//! the same in every process and replica (unlike a per-process randomized
//! hash), stored in Redis as `<prefix>:{<digest in hex>}` (see `storage::redis`).

use xxhash_rust::xxh3::xxh3_128;

use super::target::Target;

/// A URL as the cache knows it: the digest of its normalized target, the
/// same in every process and replica (unlike a per-process randomized hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct UrlKey(u128);

impl UrlKey {
    pub(crate) fn of(target: &Target) -> Self {
        Self(xxh3_128(target.as_str().as_bytes()))
    }

    pub(crate) fn from_digest(digest: u128) -> Self {
        Self(digest)
    }

    pub(crate) fn digest(self) -> u128 {
        self.0
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
            EntryKey::url(UrlKey::of(&Target::parse(path, query).unwrap()))
        )
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
        assert_eq!(
            key("/air_quality", Some("b=2&a=1")),
            key("/air_quality", Some("a=1&b=2"))
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
        let variant = EntryKey::variant(UrlKey::of(&Target::parse("/x", None).unwrap()), 255);
        assert!(
            variant
                .to_string()
                .ends_with(":v:000000000000000000000000000000ff")
        );
    }
}
