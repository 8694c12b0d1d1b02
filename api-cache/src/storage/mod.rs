//! Where entries live: a bounded in-process tier ([`local`]) in front of a store
//! every replica shares ([`SharedStore`]: [`redis`] in production, [`memory`]
//! in tests), and the messages replicas exchange through it ([`Event`]).
//!
//! The read path talks to [`Storage`] only. Reads try the local tier, then the
//! shared store; what the shared store returns is kept locally too. Writes go
//! to the local tier at once and to the shared store in the background, off
//! the response path (at most `BACKGROUND_WRITES` at a time; past that a write
//! is skipped, not queued). A fill holds a [`FillLock`] across replicas; it is
//! released exactly once, whatever becomes of the request.

mod events;
pub(crate) mod local;
mod lock;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::{Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

pub(crate) use self::events::Event;
use self::local::LocalTier;
pub(crate) use self::lock::FillLock;
use crate::cache::breaker;
use crate::cache::entry::Entry;
use crate::cache::key::{EntryKey, UrlKey};
use crate::cache::stored::{StoredResponse, StoredValue};
use crate::cache::vary::{request_values, variant_key};
use crate::metrics::CacheMetrics;

/// Writes to the shared store in flight at most.
const BACKGROUND_WRITES: usize = 256;

/// Stored bodies larger than this are decoded on a blocking thread, not on
/// the async workers.
const DECODE_INLINE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("redis is skipped while the circuit breaker is open")]
    CircuitOpen,
    #[error("cannot read REDIS_TLS_CA_FILE: {0}")]
    CaFile(std::io::Error),
    #[cfg(test)]
    #[error("the store is unavailable (test)")]
    Unavailable,
}

pub(crate) type StoreFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A purge tag: the set of URLs under a path prefix, or whose responses
/// carried a surrogate key. A tag set holds only live entries (each member
/// leaves when its entry expires), so it grows with what is stored, never
/// with traffic.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Tag {
    Path(String),
    SurrogateKey(String),
    /// Entries whose response carried too many surrogate keys to tag each
    /// (`MAX_SURROGATE_KEYS`): a purge by any key purges them too.
    AnyKey,
}

/// Path prefixes are tags down to this many segments (`/a/b/c/d`), each at
/// most `MAX_TAG_BYTES` long; the root is not a tag (every URL is under it).
pub(crate) const MAX_PREFIX_DEPTH: usize = 4;
/// Surrogate keys an entry is tagged with one by one; past that, `Tag::AnyKey`.
pub(crate) const MAX_SURROGATE_KEYS: usize = 64;
/// The longest path prefix or surrogate key used as a tag.
pub(crate) const MAX_TAG_BYTES: usize = 256;

/// The tags of an entry: its URL's path prefixes (see `MAX_PREFIX_DEPTH`) and
/// the surrogate keys its response carried.
pub(crate) fn tags_of(path: &str, surrogate_keys: Option<&str>) -> Vec<Tag> {
    let mut tags = Vec::new();
    let mut end = 0;
    for segment in path.split('/').skip(1).take(MAX_PREFIX_DEPTH) {
        end += 1 + segment.len();
        if segment.is_empty() || end > MAX_TAG_BYTES {
            break;
        }
        tags.push(Tag::Path(path[..end].to_owned()));
    }
    let keys: Vec<&str> = surrogate_keys.map_or_else(Vec::new, |k| k.split_whitespace().collect());
    if keys.len() > MAX_SURROGATE_KEYS || keys.iter().any(|k| k.len() > MAX_TAG_BYTES) {
        tags.push(Tag::AnyKey);
    } else {
        tags.extend(keys.into_iter().map(|k| Tag::SurrogateKey(k.to_owned())));
    }
    tags
}

/// One entry to store, with what it needs besides itself.
#[derive(Debug)]
pub(crate) struct Write {
    /// Where the entry goes: the URL's key, or its variant's.
    pub(crate) key: EntryKey,
    pub(crate) entry: Arc<Entry>,
    /// The varied header names; not empty: a Vary index goes under the URL.
    pub(crate) vary: Vec<String>,
    pub(crate) tags: Vec<Tag>,
    /// How long the shared store keeps it: freshness plus the longest stale use.
    pub(crate) ttl: Duration,
}

/// The store every replica shares. Every operation is bounded in time; an
/// error means "go on without it", never a failed request.
pub(crate) trait SharedStore: Send + Sync + std::fmt::Debug {
    /// The value under `key`: an entry, or the URL's Vary index. An
    /// unreadable value counts as absent.
    fn get(&self, key: EntryKey) -> StoreFuture<'_, Option<StoredValue>>;
    /// Stores the entry (and the Vary index when it varies) and adds its URL
    /// to every tag set, each with the write's TTL.
    fn put<'a>(&'a self, write: &'a Write) -> StoreFuture<'a, ()>;
    /// Takes the fill lock of `flight` for `ttl` if nobody holds it.
    fn try_lock<'a>(
        &'a self,
        flight: EntryKey,
        token: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool>;
    /// What the lock of `flight` has left; `None` if nobody holds it.
    fn lock_remaining(&self, flight: EntryKey) -> StoreFuture<'_, Option<Duration>>;
    /// Releases the lock if `token` still holds it.
    fn unlock<'a>(&'a self, flight: EntryKey, token: &'a str) -> StoreFuture<'a, ()>;
    /// Removes every entry of the URL; returns the keys removed.
    fn invalidate(&self, url: UrlKey) -> StoreFuture<'_, Vec<EntryKey>>;
    /// Marks every entry of the URL stale, keeping them for their grace
    /// period; returns the keys marked.
    fn mark_stale(&self, url: UrlKey) -> StoreFuture<'_, Vec<EntryKey>>;
    /// The URLs in a tag set, a page at a time: from `cursor` (0 to start),
    /// with the cursor of the next page (0 when there is none).
    fn tagged<'a>(&'a self, tag: &'a Tag, cursor: u64) -> StoreFuture<'a, (Vec<UrlKey>, u64)>;
    fn drop_tag<'a>(&'a self, tag: &'a Tag) -> StoreFuture<'a, ()>;
    /// Tells every replica (this one included).
    fn publish<'a>(&'a self, event: &'a Event) -> StoreFuture<'a, ()>;
    /// Every replica's events, from `start` on.
    fn events(&self) -> broadcast::Receiver<Event>;
    /// Starts following the replicas' events, until `stopped`.
    fn start(&self, stopped: CancellationToken);
    fn ping(&self) -> StoreFuture<'_, ()>;
    fn breaker_state(&self) -> breaker::State;
}

/// What a lookup in the shared store found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The entry for this request (the matching variant, if the URL varies).
    Found(Arc<Entry>),
    /// Nothing for this request. `flight` is what concurrent requests for
    /// the same response share: the variant's key when the URL is known to vary.
    Absent { vary_miss: bool, flight: EntryKey },
    /// The shared store did not answer in time, failed, or its breaker is open.
    Unavailable,
}

/// The local tier in front of the shared store. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    local: LocalTier,
    shared: Arc<dyn SharedStore>,
    writes: Arc<Semaphore>,
    metrics: CacheMetrics,
}

impl Storage {
    pub(crate) fn new(
        local: LocalTier,
        shared: Arc<dyn SharedStore>,
        metrics: CacheMetrics,
    ) -> Self {
        Self {
            local,
            shared,
            writes: Arc::new(Semaphore::new(BACKGROUND_WRITES)),
            metrics,
        }
    }

    /// Follows the replicas' events until `stopped`: purges drop local copies.
    pub(crate) fn start(&self, stopped: CancellationToken) {
        let mut events = self.shared.events();
        self.shared.start(stopped.clone());
        let local = self.local.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stopped.cancelled() => return,
                    event = events.recv() => event,
                };
                match event {
                    Ok(Event::Invalidated(keys)) => keys.iter().for_each(|key| local.remove(*key)),
                    Ok(Event::Filled(_)) => {}
                    // Missed some: what is missed is bounded by the local copies' life.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    /// The entry for this request in the in-process tier.
    pub(crate) fn local(&self, url: UrlKey, request: &HeaderMap) -> Option<Arc<Entry>> {
        let found = self.local.lookup(url, request);
        self.metrics.local_lookup(found.is_some());
        found
    }

    /// The entry for this request in the shared store; kept locally too.
    /// When it is the very version `held` already (this process' copy, gone
    /// stale), that copy is reused instead of decoding the body again.
    pub(crate) async fn lookup(
        &self,
        url: UrlKey,
        request: &HeaderMap,
        held: Option<&Arc<Entry>>,
    ) -> Lookup {
        let lookup = match self.shared_lookup(url, request, held).await {
            Ok(lookup) => lookup,
            Err(error) => {
                if !matches!(error, StoreError::CircuitOpen) {
                    tracing::warn!(key = %EntryKey::url(url), %error, "cache lookup failed; going without Redis");
                }
                Lookup::Unavailable
            }
        };
        self.metrics.shared_lookup(&lookup);
        if let Lookup::Found(entry) = &lookup {
            let names: Vec<String> = entry.stored().vary.iter().map(|(n, _)| n.clone()).collect();
            let key = variant_key_of(url, entry.stored());
            // What is left of its life in the shared store is unknown here; its
            // freshness plus the grace is checked at use, so a minute bounds the copy.
            self.local
                .put(key, entry.clone(), &names, Duration::from_secs(60));
        }
        lookup
    }

    async fn shared_lookup(
        &self,
        url: UrlKey,
        request: &HeaderMap,
        held: Option<&Arc<Entry>>,
    ) -> Result<Lookup, StoreError> {
        let primary = EntryKey::url(url);
        Ok(match self.shared.get(primary).await? {
            None => Lookup::Absent {
                vary_miss: false,
                flight: primary,
            },
            Some(StoredValue::Entry(stored)) => found(primary, stored, held).await,
            Some(StoredValue::VaryIndex(names)) => {
                let variant = variant_key(url, &request_values(&names, request));
                match self.shared.get(variant).await? {
                    Some(StoredValue::Entry(stored)) => found(variant, stored, held).await,
                    _ => Lookup::Absent {
                        vary_miss: true,
                        flight: variant,
                    },
                }
            }
        })
    }

    /// Takes the cross-replica fill lock of `flight`, if free.
    pub(crate) async fn lock(
        &self,
        flight: EntryKey,
        ttl: Duration,
    ) -> Result<Option<FillLock>, StoreError> {
        FillLock::acquire(self.shared.clone(), flight, ttl).await
    }

    /// What another replica's lock on `flight` has left.
    pub(crate) async fn lock_remaining(
        &self,
        flight: EntryKey,
    ) -> Result<Option<Duration>, StoreError> {
        self.shared.lock_remaining(flight).await
    }

    /// Every replica's events (to wait for another replica's fill).
    pub(crate) fn events(&self) -> broadcast::Receiver<Event> {
        self.shared.events()
    }

    /// Keeps the entry locally now and writes it to the shared store in the
    /// background; then `lock`, if held, is released (which tells waiting
    /// replicas). A write skipped because too many are in flight releases
    /// the lock all the same.
    pub(crate) fn store(&self, write: Write, lock: Option<FillLock>) {
        self.local
            .put(write.key, write.entry.clone(), &write.vary, write.ttl);
        let Ok(permit) = self.writes.clone().try_acquire_owned() else {
            tracing::warn!(key = %write.key, "too many Redis writes in flight; not storing this one");
            self.metrics.store_skipped();
            drop(lock);
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.shared.put(&write).await;
            this.metrics
                .stored(&result, write.entry.stored().body.len());
            if let Err(error) = &result {
                tracing::warn!(key = %write.key, %error, "could not store the response");
            }
            if let Some(lock) = lock {
                lock.release().await;
            }
            drop(permit);
        });
    }

    /// Deletes the URL's entries everywhere: the shared store, and every
    /// replica's local tier. Returns how many there were.
    pub(crate) async fn invalidate(&self, url: UrlKey) -> Result<usize, StoreError> {
        self.local.remove(EntryKey::url(url));
        let keys = self.shared.invalidate(url).await?;
        keys.iter().for_each(|key| self.local.remove(*key));
        self.shared
            .publish(&Event::Invalidated(keys.clone()))
            .await?;
        Ok(keys.len())
    }

    /// Marks the URL's entries stale everywhere (a soft purge).
    pub(crate) async fn mark_stale(&self, url: UrlKey) -> Result<usize, StoreError> {
        let marked = self.shared.mark_stale(url).await?;
        let mut dropped = marked.clone();
        dropped.push(EntryKey::url(url));
        dropped.iter().for_each(|key| self.local.remove(*key));
        self.shared.publish(&Event::Invalidated(dropped)).await?;
        Ok(marked.len())
    }

    /// Purges every URL in a tag set, a page at a time; returns how many
    /// URLs had entries. A surrogate key's purge takes the entries tagged with
    /// any key too (`Tag::AnyKey`).
    pub(crate) async fn purge_tag(&self, tag: &Tag, soft: bool) -> Result<usize, StoreError> {
        let mut purged = self.purge_one_tag(tag, soft).await?;
        if matches!(tag, Tag::SurrogateKey(_)) {
            purged += self.purge_one_tag(&Tag::AnyKey, soft).await?;
        }
        Ok(purged)
    }

    async fn purge_one_tag(&self, tag: &Tag, soft: bool) -> Result<usize, StoreError> {
        let (mut purged, mut cursor) = (0, 0);
        loop {
            let (urls, next) = self.shared.tagged(tag, cursor).await?;
            for url in urls {
                let count = if soft {
                    self.mark_stale(url).await?
                } else {
                    self.invalidate(url).await?
                };
                purged += usize::from(count > 0);
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        if !soft {
            self.shared.drop_tag(tag).await?;
        }
        Ok(purged)
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.shared.ping().await
    }

    pub(crate) fn breaker_state(&self) -> breaker::State {
        self.shared.breaker_state()
    }

    /// Bytes held by the local tier.
    pub(crate) fn local_weight(&self) -> u64 {
        self.local.weight()
    }
}

/// The key an entry is stored under: its URL's, or its variant's.
pub(crate) fn variant_key_of(url: UrlKey, stored: &StoredResponse) -> EntryKey {
    if stored.vary.is_empty() {
        EntryKey::url(url)
    } else {
        variant_key(url, &stored.vary)
    }
}

/// An entry read from the shared store, made ready to serve (its body
/// decoded once, off the async workers when it is large), or the copy held
/// already when it is the same version.
async fn found(key: EntryKey, stored: StoredResponse, held: Option<&Arc<Entry>>) -> Lookup {
    if let Some(held) = held
        && held.stored().same_version(&stored)
    {
        return Lookup::Found(held.clone());
    }
    let entry = if stored.body.len() > DECODE_INLINE_BYTES {
        crate::cpu::run(move || Entry::decode(stored))
            .await
            .ok_or(())
            .and_then(|r| r.map_err(|_| ()))
    } else {
        Entry::decode(stored).map_err(|_| ())
    };
    match entry {
        Ok(entry) => Lookup::Found(Arc::new(entry)),
        Err(()) => {
            tracing::warn!(%key, "a stored body cannot be decoded; treating it as a miss");
            Lookup::Absent {
                vary_miss: key.variant.is_some(),
                flight: key,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(tags: &[Tag]) -> Vec<&str> {
        tags.iter()
            .filter_map(|t| match t {
                Tag::Path(p) => Some(p.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn path_tags_stop_at_four_segments_and_leave_out_the_root() {
        let tags = tags_of("/a/b/c/d/e/f", None);
        assert_eq!(paths(&tags), ["/a", "/a/b", "/a/b/c", "/a/b/c/d"]);
        assert!(tags_of("/", None).is_empty());
        assert_eq!(paths(&tags_of("/air_quality", None)), ["/air_quality"]);
    }

    #[test]
    fn a_long_segment_ends_the_path_tags_instead_of_growing_them() {
        let long = format!("/a/{}/c", "x".repeat(MAX_TAG_BYTES));
        assert_eq!(paths(&tags_of(&long, None)), ["/a"]);
        assert_eq!(
            paths(&tags_of("/a//b", None)),
            ["/a"],
            "an empty segment ends them"
        );
    }

    #[test]
    fn too_many_or_too_long_surrogate_keys_become_one_any_key_tag() {
        let few = tags_of("/x", Some("aq_jaen  aq_nevero"));
        assert!(few.contains(&Tag::SurrogateKey("aq_jaen".into())));
        assert!(few.contains(&Tag::SurrogateKey("aq_nevero".into())));
        let many: Vec<String> = (0..=MAX_SURROGATE_KEYS).map(|i| format!("k{i}")).collect();
        let tags = tags_of("/x", Some(&many.join(" ")));
        assert_eq!(tags, [Tag::Path("/x".into()), Tag::AnyKey]);
        let long = "k".repeat(MAX_TAG_BYTES + 1);
        assert_eq!(
            tags_of("/x", Some(&long)),
            [Tag::Path("/x".into()), Tag::AnyKey]
        );
    }
}
