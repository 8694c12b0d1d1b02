//! A [`SharedStore`] in memory, for unit tests of the read path: the same
//! operations as Redis (entries, Vary indexes, locks, tag sets, events), no
//! network. [`MemoryStore::set_available`] simulates an outage.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Event, SharedStore, StoreError, StoreFuture, Tag, Write};
use crate::cache::breaker;
use crate::cache::key::{EntryKey, UrlKey};
use crate::cache::stored::StoredValue;

/// URLs in one page of a tag set (small, so tests page).
const PAGE: usize = 2;

#[derive(Debug)]
pub(crate) struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<Event>,
    available: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    values: HashMap<EntryKey, StoredValue>,
    variants: HashMap<UrlKey, HashSet<EntryKey>>,
    locks: HashMap<EntryKey, (String, Instant)>,
    tags: HashMap<Tag, HashSet<UrlKey>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            state: Mutex::default(),
            events: broadcast::channel(1024).0,
            available: AtomicBool::new(true),
        }
    }
}

impl MemoryStore {
    /// `false`: every operation fails, as when Redis is down.
    pub(crate) fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::SeqCst);
    }

    pub(crate) fn is_locked(&self, flight: EntryKey) -> bool {
        self.state()
            .locks
            .get(&flight)
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    /// Entries stored (Vary indexes left out).
    pub(crate) fn entries(&self) -> usize {
        self.state()
            .values
            .values()
            .filter(|v| matches!(v, StoredValue::Entry(_)))
            .count()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn run<'a, T: Send + 'a>(
        &'a self,
        operation: impl FnOnce(&mut State) -> T + Send + 'a,
    ) -> StoreFuture<'a, T> {
        Box::pin(async move {
            if !self.available.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable);
            }
            Ok(operation(&mut self.state()))
        })
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: EntryKey) -> StoreFuture<'_, Option<StoredValue>> {
        self.run(move |state| state.values.get(&key).cloned())
    }

    fn put<'a>(&'a self, write: &'a Write) -> StoreFuture<'a, ()> {
        self.run(move |state| {
            let url = write.key.url;
            if !write.vary.is_empty() {
                state.values.insert(
                    EntryKey::url(url),
                    StoredValue::VaryIndex(write.vary.clone()),
                );
                state.variants.entry(url).or_default().insert(write.key);
            }
            state
                .values
                .insert(write.key, StoredValue::Entry(write.entry.stored().clone()));
            for tag in &write.tags {
                state.tags.entry(tag.clone()).or_default().insert(url);
            }
        })
    }

    fn try_lock<'a>(
        &'a self,
        flight: EntryKey,
        token: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        self.run(move |state| {
            let now = Instant::now();
            if state
                .locks
                .get(&flight)
                .is_some_and(|(_, until)| *until > now)
            {
                return false;
            }
            state.locks.insert(flight, (token.to_owned(), now + ttl));
            true
        })
    }

    fn lock_remaining(&self, flight: EntryKey) -> StoreFuture<'_, Option<Duration>> {
        self.run(move |state| {
            let now = Instant::now();
            state
                .locks
                .get(&flight)
                .and_then(|(_, until)| until.checked_duration_since(now))
        })
    }

    fn unlock<'a>(&'a self, flight: EntryKey, token: &'a str) -> StoreFuture<'a, ()> {
        self.run(move |state| {
            if state
                .locks
                .get(&flight)
                .is_some_and(|(held, _)| held == token)
            {
                state.locks.remove(&flight);
            }
        })
    }

    fn invalidate(&self, url: UrlKey) -> StoreFuture<'_, Vec<EntryKey>> {
        self.run(move |state| {
            let mut keys: Vec<EntryKey> =
                state.variants.remove(&url).into_iter().flatten().collect();
            keys.push(EntryKey::url(url));
            keys.retain(|key| state.values.remove(key).is_some());
            keys
        })
    }

    fn mark_stale(&self, url: UrlKey) -> StoreFuture<'_, Vec<EntryKey>> {
        self.run(move |state| {
            let mut keys: Vec<EntryKey> = state
                .variants
                .get(&url)
                .into_iter()
                .flatten()
                .copied()
                .collect();
            keys.push(EntryKey::url(url));
            keys.retain(|key| match state.values.get_mut(key) {
                Some(StoredValue::Entry(stored)) => {
                    stored.lifetime_ms = 0;
                    true
                }
                _ => false,
            });
            keys
        })
    }

    fn tagged<'a>(&'a self, tag: &'a Tag, cursor: u64) -> StoreFuture<'a, (Vec<UrlKey>, u64)> {
        self.run(move |state| {
            let mut urls: Vec<UrlKey> =
                state.tags.get(tag).into_iter().flatten().copied().collect();
            urls.sort_by_key(|url| format!("{url:?}"));
            let start = usize::try_from(cursor)
                .unwrap_or(usize::MAX)
                .min(urls.len());
            let page: Vec<UrlKey> = urls[start..].iter().take(PAGE).copied().collect();
            let next = start + page.len();
            (page, if next < urls.len() { next as u64 } else { 0 })
        })
    }

    fn drop_tag<'a>(&'a self, tag: &'a Tag) -> StoreFuture<'a, ()> {
        self.run(move |state| {
            state.tags.remove(tag);
        })
    }

    fn publish<'a>(&'a self, event: &'a Event) -> StoreFuture<'a, ()> {
        self.run(move |_| {
            // Nobody listening is fine.
            let _ = self.events.send(event.clone());
        })
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn start(&self, _stopped: CancellationToken) {}

    fn ping(&self) -> StoreFuture<'_, ()> {
        self.run(|_| ())
    }

    fn breaker_state(&self) -> breaker::State {
        if self.available.load(Ordering::SeqCst) {
            breaker::State::Closed
        } else {
            breaker::State::Open
        }
    }
}
