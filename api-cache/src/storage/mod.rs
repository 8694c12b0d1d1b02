//! Where entries live: a bounded in-process tier ([`local`]) in front of Redis
//! ([`redis`]), which all replicas share, plus the messages replicas exchange
//! through Redis pub/sub ([`events`]).
//!
//! Reads try the local tier, then Redis. Writes go to the local tier at once
//! and to Redis in the background, off the response path (at most
//! `BACKGROUND_WRITES` at a time; past that a write is skipped, not queued).

mod events;
pub mod local;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use service_kit::Metrics;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

use self::local::LocalCache;
use self::redis::{RedisStore, StoreError};
use crate::cache::entry::{StoredResponse, StoredValue};
use crate::cache::key::CacheKey;
use crate::cache::vary::{request_values, variant_key};

/// Redis writes in flight at most.
const BACKGROUND_WRITES: usize = 256;

/// What a lookup in Redis found.
#[derive(Debug)]
pub enum Lookup {
    /// The entry for this request (the matching variant, if the URL varies).
    Found(Arc<StoredResponse>),
    /// Nothing for this request. `flight` is the key concurrent requests for
    /// the same response share: the variant key when the URL is known to vary.
    Absent { vary_miss: bool, flight: CacheKey },
    /// Redis did not answer in time, failed, or its breaker is open.
    Unavailable,
}

/// A lock on a key, held while this replica fetches it for everyone.
#[derive(Debug, Clone)]
pub struct Lock {
    pub key: CacheKey,
    pub token: String,
}

/// One entry to store.
#[derive(Debug)]
pub struct Write {
    pub primary: CacheKey,
    pub entry: Arc<StoredResponse>,
    pub vary: Vec<String>,
    pub tags: Vec<CacheKey>,
    pub ttl: Duration,
    /// Waiters on other replicas wait for `filled <flight>`.
    pub flight: CacheKey,
    pub lock: Option<Lock>,
}

#[derive(Debug, Clone)]
pub struct Storage {
    pub redis: RedisStore,
    pub local: LocalCache,
    prefix: Arc<str>,
    channel: Arc<str>,
    fills: broadcast::Sender<Arc<str>>,
    writes: Arc<Semaphore>,
    metrics: Metrics,
}

impl Storage {
    pub fn new(redis: RedisStore, local: LocalCache, prefix: &str, metrics: Metrics) -> Self {
        let (fills, _) = broadcast::channel(1024);
        Self {
            redis,
            local,
            prefix: Arc::from(prefix),
            channel: Arc::from(format!("{prefix}:events")),
            fills,
            writes: Arc::new(Semaphore::new(BACKGROUND_WRITES)),
            metrics,
        }
    }

    /// Starts following the other replicas' messages, until `stopped`.
    pub fn start(&self, stopped: CancellationToken) {
        events::spawn_listener(
            self.redis.client().clone(),
            self.channel.clone(),
            self.local.clone(),
            self.fills.clone(),
            stopped,
        );
    }

    /// The tag set of URLs under a path prefix (whole segments: `/air_quality`).
    pub fn path_tag(&self, path: &str) -> CacheKey {
        CacheKey::from_raw(format!("{}:tag:path:{path}", self.prefix))
    }

    /// The tag set of URLs whose responses carried this surrogate key.
    pub fn key_tag(&self, key: &str) -> CacheKey {
        CacheKey::from_raw(format!("{}:tag:key:{key}", self.prefix))
    }

    /// The lock key of a flight.
    pub fn lock_key(flight: &CacheKey) -> CacheKey {
        CacheKey::derived(flight, "lock")
    }

    pub fn local_lookup(
        &self,
        primary: &CacheKey,
        request: &HeaderMap,
    ) -> Option<Arc<StoredResponse>> {
        let found = self.local.lookup(primary, request);
        self.metrics.scope(|| {
            let result = if found.is_some() { "hit" } else { "miss" };
            metrics::counter!("api_cache_lookups_total", "tier" => "local", "result" => result)
                .increment(1);
        });
        found
    }

    /// Looks the request up in Redis; what is found is kept locally too.
    pub async fn shared_lookup(&self, primary: &CacheKey, request: &HeaderMap) -> Lookup {
        let lookup = async {
            match self.redis.get(primary).await? {
                None => Ok(Lookup::Absent {
                    vary_miss: false,
                    flight: primary.clone(),
                }),
                Some(StoredValue::Entry(entry)) => Ok(Lookup::Found(Arc::new(entry))),
                Some(StoredValue::VaryIndex(names)) => {
                    let variant = variant_key(primary, &request_values(&names, request));
                    Ok(match self.redis.get(&variant).await? {
                        Some(StoredValue::Entry(entry)) => Lookup::Found(Arc::new(entry)),
                        _ => Lookup::Absent {
                            vary_miss: true,
                            flight: variant,
                        },
                    })
                }
            }
        };
        let lookup = match lookup.await {
            Ok(lookup) => lookup,
            Err(error) => {
                let error: StoreError = error;
                if !matches!(error, StoreError::CircuitOpen) {
                    tracing::warn!(key = %primary, %error, "cache lookup failed; going without Redis");
                }
                Lookup::Unavailable
            }
        };
        self.metrics.scope(|| {
            let result = match &lookup {
                Lookup::Found(_) => "hit",
                Lookup::Absent { .. } => "miss",
                Lookup::Unavailable => "unavailable",
            };
            metrics::counter!("api_cache_lookups_total", "tier" => "redis", "result" => result)
                .increment(1);
        });
        if let Lookup::Found(entry) = &lookup {
            let names: Vec<String> = entry.vary.iter().map(|(name, _)| name.clone()).collect();
            // What is left of its life in Redis is unknown here; its freshness
            // plus the grace is checked at use, so a minute bounds the copy.
            self.local
                .put(primary, entry.clone(), &names, Duration::from_secs(60));
        }
        lookup
    }

    /// Keeps the entry locally now and writes it to Redis in the background;
    /// then tells waiting replicas and releases the lock, if held.
    pub fn store(&self, write: Write) {
        self.local
            .put(&write.primary, write.entry.clone(), &write.vary, write.ttl);
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            tracing::warn!(key = %write.primary, "too many Redis writes in flight; not storing this one");
            self.metrics
                .scope(|| metrics::counter!("api_cache_store_skipped_total").increment(1));
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let result = this
                .redis
                .store(
                    &write.primary,
                    &write.entry,
                    &write.vary,
                    &write.tags,
                    write.ttl,
                )
                .await;
            this.metrics.scope(|| match &result {
                Ok(()) => {
                    metrics::counter!("api_cache_stored_total").increment(1);
                    metrics::histogram!("api_cache_stored_body_bytes")
                        .record(write.entry.body.len() as f64);
                }
                Err(_) => metrics::counter!("api_cache_store_errors_total").increment(1),
            });
            if let Err(error) = &result {
                tracing::warn!(key = %write.primary, %error, "could not store the response");
            }
            if let Some(lock) = write.lock {
                let _ = this
                    .redis
                    .publish(&this.channel, &events::filled(write.flight.as_str()))
                    .await;
                if let Err(error) = this.redis.unlock(&lock.key, &lock.token).await {
                    tracing::debug!(key = %lock.key, %error, "could not release the fill lock (it expires)");
                }
            }
            drop(permit);
        });
    }

    /// Tells waiting replicas that a flight ended without a stored entry, and
    /// releases the lock.
    pub async fn release(&self, flight: &CacheKey, lock: &Lock) {
        let _ = self
            .redis
            .publish(&self.channel, &events::filled(flight.as_str()))
            .await;
        let _ = self.redis.unlock(&lock.key, &lock.token).await;
    }

    /// Wakes when another replica announces `flight` filled.
    pub fn subscribe_fills(&self) -> broadcast::Receiver<Arc<str>> {
        self.fills.subscribe()
    }

    fn forget_locally(&self, keys: &[String]) {
        for key in keys {
            self.local.remove(key);
        }
    }

    /// Deletes the URL's entries everywhere: Redis, and every replica's local tier.
    pub async fn invalidate(&self, primary: &CacheKey) -> Result<usize, StoreError> {
        self.local.remove(primary.as_str());
        let keys = self.redis.invalidate(primary).await?;
        self.forget_locally(&keys);
        self.redis
            .publish(&self.channel, &events::invalidated(&keys))
            .await?;
        Ok(keys.len())
    }

    /// Marks the URL's entries stale everywhere (a soft purge).
    pub async fn mark_stale(&self, primary: &CacheKey) -> Result<usize, StoreError> {
        self.local.remove(primary.as_str());
        let keys = self.redis.mark_stale(primary).await?;
        let mut dropped = keys.clone();
        dropped.push(primary.as_str().to_owned());
        self.forget_locally(&dropped);
        self.redis
            .publish(&self.channel, &events::invalidated(&dropped))
            .await?;
        Ok(keys.len())
    }

    /// Purges every URL in a tag set; returns how many URLs had entries.
    pub async fn purge_tag(&self, tag: &CacheKey, soft: bool) -> Result<usize, StoreError> {
        let mut purged = 0;
        for member in self.redis.tagged(tag).await? {
            let primary = CacheKey::from_raw(member);
            let count = if soft {
                self.mark_stale(&primary).await?
            } else {
                self.invalidate(&primary).await?
            };
            purged += usize::from(count > 0);
        }
        if !soft {
            self.redis.delete(tag).await?;
        }
        Ok(purged)
    }
}
