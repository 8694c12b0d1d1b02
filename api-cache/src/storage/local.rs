//! The in-process tier: a bounded copy (by bytes, `CACHE_LOCAL_MAX_BYTES`) of
//! recently used entries, ready to serve (see `cache::entry`). A fresh local
//! copy answers without a round trip to Redis, and hot keys keep being served
//! while Redis is away. Purges reach every replica's copy through the replicas'
//! events; data changes through the generation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, OptionsBuilder, Weighter};

use crate::cache::entry::Entry;
use crate::cache::key::{EntryKey, UrlKey};
use crate::cache::vary::{request_values, variant_key};

#[derive(Debug, Clone)]
enum Value {
    Entry(Arc<Entry>),
    /// The URL's responses vary on these (lower-case) header names.
    VaryIndex(Arc<[String]>),
}

#[derive(Debug, Clone)]
struct Item {
    value: Value,
    /// As in Redis: freshness plus the longest stale use.
    expires_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<EntryKey, Item> for ByBytes {
    fn weight(&self, _key: &EntryKey, item: &Item) -> u64 {
        let bytes = match &item.value {
            Value::Entry(entry) => entry.weight(),
            Value::VaryIndex(names) => names.iter().map(String::len).sum::<usize>() + 64,
        };
        (bytes + 64) as u64
    }
}

/// Cheap to clone; clones share one cache. Disabled when its size is 0.
#[derive(Debug, Clone)]
pub(crate) struct LocalTier {
    inner: Option<Arc<Cache<EntryKey, Item, ByBytes>>>,
}

impl LocalTier {
    /// A tier of `max_bytes` that can hold an entry of `max_entry_bytes` (its
    /// body in both forms): the cache is split into shards, and an entry must
    /// fit in one.
    pub(crate) fn new(max_bytes: u64, max_entry_bytes: u64) -> Self {
        let inner = (max_bytes > 0).then(|| {
            // A power of two (quick_cache rounds up), so that a shard holds the largest entry.
            let fits = (max_bytes / max_entry_bytes.max(1)).clamp(1, 16);
            let shards = 1u64 << (63 - fits.leading_zeros());
            let options = OptionsBuilder::new()
                // About 64 KiB per entry on average, for the initial sizing only.
                .estimated_items_capacity(
                    usize::try_from(max_bytes / 65_536).unwrap_or(1024).max(16),
                )
                .weight_capacity(max_bytes)
                .shards(usize::try_from(shards).unwrap_or(1))
                .build();
            let cache = match options {
                Ok(options) => Cache::with_options(
                    options,
                    ByBytes,
                    DefaultHashBuilder::default(),
                    Default::default(),
                ),
                Err(_) => Cache::with_weighter(1024, max_bytes, ByBytes),
            };
            Arc::new(cache)
        });
        Self { inner }
    }

    fn get(&self, key: EntryKey) -> Option<Value> {
        let item = self.inner.as_ref()?.get(&key)?;
        (item.expires_at > Instant::now()).then_some(item.value)
    }

    /// The entry for this request, if held here (the matching variant if the URL varies).
    pub(crate) fn lookup(&self, url: UrlKey, request: &HeaderMap) -> Option<Arc<Entry>> {
        match self.get(EntryKey::url(url))? {
            Value::Entry(entry) => Some(entry),
            Value::VaryIndex(names) => {
                match self.get(variant_key(url, &request_values(&names, request)))? {
                    Value::Entry(entry) => Some(entry),
                    Value::VaryIndex(_) => None,
                }
            }
        }
    }

    /// Keeps `entry` under `key` for `ttl`; when `vary` is not empty, `key` is
    /// a variant's and the URL gets a Vary index.
    pub(crate) fn put(&self, key: EntryKey, entry: Arc<Entry>, vary: &[String], ttl: Duration) {
        let Some(inner) = &self.inner else { return };
        // Clamped: an origin may declare lifetimes Instant cannot count to.
        let ttl = ttl.min(Duration::from_secs(365 * 24 * 3600));
        let expires_at = Instant::now() + ttl;
        if !vary.is_empty() {
            let index = Item {
                value: Value::VaryIndex(vary.into()),
                expires_at,
            };
            inner.insert(EntryKey::url(key.url), index);
        }
        let item = Item {
            value: Value::Entry(entry),
            expires_at,
        };
        inner.insert(key, item);
    }

    pub(crate) fn remove(&self, key: EntryKey) {
        if let Some(inner) = &self.inner {
            inner.remove(&key);
        }
    }

    /// Bytes held now.
    pub(crate) fn weight(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::encoding::Encoding;
    use crate::cache::freshness::Timing;
    use crate::cache::stored::StoredResponse;
    use crate::cache::target::Target;
    use bytes::Bytes;
    use http::HeaderValue;
    use std::time::SystemTime;

    fn entry(body: &'static str, vary: Vec<(String, Option<String>)>) -> Arc<Entry> {
        let now = SystemTime::now();
        let stored = StoredResponse {
            status: 200,
            headers: vec![],
            body: Bytes::from_static(body.as_bytes()),
            encoding: Encoding::Identity,
            identity_length: body.len() as u64,
            timing: Timing {
                request_time: now,
                response_time: now,
                date: None,
                age_value: 0,
            },
            lifetime_ms: 1000,
            vary,
            shared_with_credentials: false,
            generation: 0,
        };
        Arc::new(Entry::decode(stored).unwrap())
    }

    fn url(path: &str) -> UrlKey {
        UrlKey::of(&Target::parse(path, None).unwrap())
    }

    fn body(found: Option<Arc<Entry>>) -> Option<Bytes> {
        found.map(|e| e.representation(false).body.clone())
    }

    #[test]
    fn keeps_variants_apart_and_forgets_on_request() {
        let local = LocalTier::new(1 << 20, 1 << 16);
        let names = vec!["accept-language".to_owned()];
        let values = vec![("accept-language".to_owned(), Some("fr".to_owned()))];
        let key = variant_key(url("/x"), &values);
        local.put(key, entry("fr", values), &names, Duration::from_secs(60));
        let mut request = HeaderMap::new();
        request.insert("accept-language", HeaderValue::from_static("fr"));
        assert_eq!(body(local.lookup(url("/x"), &request)).unwrap(), "fr");
        request.insert("accept-language", HeaderValue::from_static("de"));
        assert!(local.lookup(url("/x"), &request).is_none());
        local.remove(EntryKey::url(url("/x")));
        assert!(local.lookup(url("/x"), &HeaderMap::new()).is_none());
    }

    #[test]
    fn is_bounded_by_bytes_and_expires() {
        let local = LocalTier::new(16 * 1024, 2048);
        for i in 0..100 {
            let key = EntryKey::url(url(&format!("/{i}")));
            local.put(
                key,
                entry("0123456789", vec![]),
                &[],
                Duration::from_secs(60),
            );
        }
        assert!(local.weight() <= 16 * 1024, "{} bytes held", local.weight());
        let gone = EntryKey::url(url("/gone"));
        local.put(gone, entry("x", vec![]), &[], Duration::ZERO);
        assert!(local.lookup(url("/gone"), &HeaderMap::new()).is_none());
        assert!(
            LocalTier::new(0, 1)
                .lookup(url("/gone"), &HeaderMap::new())
                .is_none(),
            "disabled"
        );
    }

    #[test]
    fn an_entry_as_large_as_allowed_fits() {
        let big: &'static str = Box::leak("x".repeat(100_000).into_boxed_str());
        let local = LocalTier::new(1 << 20, 200_000);
        local.put(
            EntryKey::url(url("/big")),
            entry(big, vec![]),
            &[],
            Duration::from_secs(60),
        );
        assert!(local.lookup(url("/big"), &HeaderMap::new()).is_some());
    }
}
