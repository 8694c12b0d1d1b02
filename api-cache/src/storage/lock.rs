//! The fill lock: while one replica fetches an entry for everyone, it holds
//! `<entry>:lock` in the shared store and the others wait for its `filled`
//! event. [`FillLock`] is the owned guard: it is released exactly once, by
//! [`FillLock::release`] or, if the holder is dropped first (its client went
//! away, its store was skipped, it panicked), in the background from `Drop`.
//! A replica that dies holding it blocks the others no longer than its TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{Event, SharedStore, StoreError};
use crate::cache::key::EntryKey;

#[derive(Debug)]
pub(crate) struct FillLock {
    store: Arc<dyn SharedStore>,
    flight: EntryKey,
    token: String,
    released: bool,
}

impl FillLock {
    /// The lock of `flight`, if nobody holds it.
    pub(super) async fn acquire(
        store: Arc<dyn SharedStore>,
        flight: EntryKey,
        ttl: Duration,
    ) -> Result<Option<Self>, StoreError> {
        let token = token();
        if !store.try_lock(flight, &token, ttl).await? {
            return Ok(None);
        }
        Ok(Some(Self {
            store,
            flight,
            token,
            released: false,
        }))
    }

    /// Tells the waiting replicas the fill is over, and unlocks.
    pub(crate) async fn release(mut self) {
        self.released = true;
        release(&*self.store, self.flight, &self.token).await;
    }
}

async fn release(store: &dyn SharedStore, flight: EntryKey, token: &str) {
    if let Err(error) = store.unlock(flight, token).await {
        tracing::debug!(key = %flight, %error, "could not release the fill lock (it expires)");
    }
    let _ = store.publish(&Event::Filled(flight)).await;
}

impl Drop for FillLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (store, flight, token) = (
            self.store.clone(),
            self.flight,
            std::mem::take(&mut self.token),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { release(&*store, flight, &token).await });
            }
            Err(_) => {
                tracing::debug!(key = %flight, "fill lock dropped outside the runtime; it expires");
            }
        }
    }
}

/// A token no other holder of a lock can have.
fn token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::UrlKey;
    use crate::cache::target::Target;
    use crate::storage::memory::MemoryStore;

    fn flight() -> EntryKey {
        EntryKey::url(UrlKey::of(&Target::parse("/locked", None).unwrap()))
    }

    #[tokio::test]
    async fn one_holder_at_a_time_and_a_release_tells_the_waiters() {
        let store = Arc::new(MemoryStore::default());
        let mut events = store.events();
        let lock = FillLock::acquire(store.clone(), flight(), Duration::from_secs(10))
            .await
            .unwrap()
            .expect("free");
        assert!(
            FillLock::acquire(store.clone(), flight(), Duration::from_secs(10))
                .await
                .unwrap()
                .is_none()
        );
        tokio::task::yield_now().await;
        assert!(
            events.try_recv().is_err(),
            "a refused lock announces nothing"
        );
        lock.release().await;
        assert_eq!(next(&mut events).await, Event::Filled(flight()));
        assert!(!store.is_locked(flight()));
    }

    /// The next event, failing the test if none comes.
    async fn next(events: &mut tokio::sync::broadcast::Receiver<Event>) -> Event {
        tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("no event came")
            .unwrap()
    }

    #[tokio::test]
    async fn a_dropped_lock_is_released_in_the_background() {
        let store = Arc::new(MemoryStore::default());
        let mut events = store.events();
        let lock = FillLock::acquire(store.clone(), flight(), Duration::from_secs(10))
            .await
            .unwrap();
        drop(lock);
        assert_eq!(next(&mut events).await, Event::Filled(flight()));
        assert!(!store.is_locked(flight()));
    }
}
