//! The in-process tier: a bounded copy (by bytes, `CACHE_LOCAL_MAX_BYTES`) of
//! recently used entries. A fresh local copy answers without a Redis round
//! trip, and hot keys keep being served while Redis is away. Purges reach every
//! replica's copy through Redis pub/sub; data changes through the generation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderMap;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::cache::entry::StoredResponse;
use crate::cache::key::CacheKey;
use crate::cache::vary::{request_values, variant_key};

#[derive(Debug, Clone)]
enum Value {
    Entry(Arc<StoredResponse>),
    VaryIndex(Arc<Vec<String>>),
}

#[derive(Debug, Clone)]
struct Item {
    value: Value,
    /// As in Redis: freshness plus the longest stale use.
    expires_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct ByBytes;

impl Weighter<String, Item> for ByBytes {
    fn weight(&self, key: &String, item: &Item) -> u64 {
        let value = match &item.value {
            Value::Entry(entry) => {
                entry.body.len()
                    + entry
                        .headers
                        .iter()
                        .map(|(n, v)| n.len() + v.len() + 16)
                        .sum::<usize>()
                    + 512
            }
            Value::VaryIndex(names) => names.iter().map(String::len).sum::<usize>() + 64,
        };
        (key.len() + value) as u64
    }
}

/// Cheap to clone; clones share one cache. Disabled when its size is 0.
#[derive(Debug, Clone)]
pub struct LocalCache {
    inner: Option<Arc<Cache<String, Item, ByBytes>>>,
}

impl LocalCache {
    pub fn new(max_bytes: u64) -> Self {
        let inner = (max_bytes > 0).then(|| {
            // About 64 KiB per entry on average, for the initial sizing only.
            let estimated_items = usize::try_from(max_bytes / 65_536).unwrap_or(1024).max(16);
            Arc::new(Cache::with_weighter(estimated_items, max_bytes, ByBytes))
        });
        Self { inner }
    }

    fn get(&self, key: &str) -> Option<Value> {
        let item = self.inner.as_ref()?.get(key)?;
        (item.expires_at > Instant::now()).then_some(item.value)
    }

    /// The entry for this request, if held here (the matching variant if the URL varies).
    pub fn lookup(&self, primary: &CacheKey, request: &HeaderMap) -> Option<Arc<StoredResponse>> {
        match self.get(primary.as_str())? {
            Value::Entry(entry) => Some(entry),
            Value::VaryIndex(names) => {
                match self.get(variant_key(primary, &request_values(&names, request)).as_str())? {
                    Value::Entry(entry) => Some(entry),
                    Value::VaryIndex(_) => None,
                }
            }
        }
    }

    /// Keeps `entry` for the URL of `primary` (as a variant when `vary` is not empty).
    pub fn put(
        &self,
        primary: &CacheKey,
        entry: Arc<StoredResponse>,
        vary: &[String],
        ttl: Duration,
    ) {
        let Some(inner) = &self.inner else { return };
        let expires_at = Instant::now() + ttl;
        if vary.is_empty() {
            inner.insert(
                primary.as_str().to_owned(),
                Item {
                    value: Value::Entry(entry),
                    expires_at,
                },
            );
        } else {
            let variant = variant_key(primary, &entry.vary);
            inner.insert(
                primary.as_str().to_owned(),
                Item {
                    value: Value::VaryIndex(Arc::new(vary.to_vec())),
                    expires_at,
                },
            );
            inner.insert(
                variant.as_str().to_owned(),
                Item {
                    value: Value::Entry(entry),
                    expires_at,
                },
            );
        }
    }

    pub fn remove(&self, key: &str) {
        if let Some(inner) = &self.inner {
            inner.remove(key);
        }
    }

    /// Bytes held now.
    pub fn weight(&self) -> u64 {
        self.inner.as_ref().map_or(0, |inner| inner.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::encoding::Encoding;
    use crate::cache::freshness::Timing;
    use crate::cache::key::NormalizedTarget;
    use bytes::Bytes;
    use http::HeaderValue;
    use std::time::SystemTime;

    fn entry(body: &'static str, vary: Vec<(String, Option<String>)>) -> Arc<StoredResponse> {
        let now = SystemTime::now();
        Arc::new(StoredResponse {
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
        })
    }

    #[test]
    fn keeps_variants_apart_and_forgets_on_request() {
        let local = LocalCache::new(1 << 20);
        let primary = CacheKey::new("p", &NormalizedTarget::new("/x", None));
        let names = vec!["accept-language".to_owned()];
        let fr = entry("fr", vec![("accept-language".into(), Some("fr".into()))]);
        local.put(&primary, fr, &names, Duration::from_secs(60));
        let mut request = HeaderMap::new();
        request.insert("accept-language", HeaderValue::from_static("fr"));
        assert_eq!(local.lookup(&primary, &request).unwrap().body, "fr");
        request.insert("accept-language", HeaderValue::from_static("de"));
        assert!(local.lookup(&primary, &request).is_none());
        local.remove(primary.as_str());
        assert!(local.lookup(&primary, &HeaderMap::new()).is_none());
    }

    #[test]
    fn is_bounded_by_bytes_and_expires() {
        let local = LocalCache::new(4096);
        for i in 0..100 {
            let key = CacheKey::new("p", &NormalizedTarget::new(&format!("/{i}"), None));
            local.put(
                &key,
                entry("0123456789", vec![]),
                &[],
                Duration::from_secs(60),
            );
        }
        assert!(local.weight() <= 4096, "{} bytes held", local.weight());
        let key = CacheKey::new("p", &NormalizedTarget::new("/gone", None));
        local.put(&key, entry("x", vec![]), &[], Duration::ZERO);
        assert!(local.lookup(&key, &HeaderMap::new()).is_none());
        assert!(
            LocalCache::new(0).lookup(&key, &HeaderMap::new()).is_none(),
            "disabled"
        );
    }
}
