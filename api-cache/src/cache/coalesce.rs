//! Single-flight: concurrent misses for one key make one origin request.
//!
//! The first request for a key becomes the [`Leader`] and fetches; the others
//! become [`Follower`]s and are woken by a `watch` channel when the leader
//! publishes its outcome (no polling). A follower waits at most a given time,
//! and at most `max_waiters` followers queue per key; past either bound the
//! request is told to fetch on its own. If the leader is dropped without
//! publishing (its client went away, it panicked), followers are told so at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

/// Flights in progress, by key.
#[derive(Debug)]
pub(crate) struct Coalescer<K, T> {
    flights: Mutex<HashMap<K, Flight<T>>>,
    max_waiters: usize,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Flight<T> {
    id: u64,
    outcome: watch::Receiver<Option<T>>,
    waiters: Arc<AtomicUsize>,
}

/// What a request should do for its key.
#[derive(Debug)]
pub(crate) enum Role<K: Eq + Hash + Clone, T: Clone> {
    /// Fetch from the origin, then [`Leader::complete`].
    Leader(Leader<K, T>),
    /// Wait for the leader with [`Follower::wait`].
    Follower(Follower<T>),
    /// Too many requests already wait for this key: fetch alone.
    Overflow,
}

/// How a follower's wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Waited<T> {
    Done(T),
    /// The leader went away without an outcome.
    Abandoned,
    TimedOut,
}

impl<K: Eq + Hash + Clone, T: Clone> Coalescer<K, T> {
    pub(crate) fn new(max_waiters: usize) -> Arc<Self> {
        Arc::new(Self {
            flights: Mutex::new(HashMap::new()),
            max_waiters,
            next_id: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Flight<T>>> {
        // A panic while holding this lock leaves the map consistent: use it anyway.
        self.flights
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Joins the flight for `key`, starting one if none is in progress.
    pub(crate) fn join(self: &Arc<Self>, key: K) -> Role<K, T> {
        let mut flights = self.lock();
        if let Some(flight) = flights.get(&key) {
            let waiting = flight.waiters.fetch_add(1, Ordering::AcqRel);
            if waiting >= self.max_waiters {
                flight.waiters.fetch_sub(1, Ordering::AcqRel);
                return Role::Overflow;
            }
            return Role::Follower(Follower {
                outcome: flight.outcome.clone(),
                waiters: flight.waiters.clone(),
            });
        }
        let (sender, receiver) = watch::channel(None);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        flights.insert(
            key.clone(),
            Flight {
                id,
                outcome: receiver,
                waiters: Arc::new(AtomicUsize::new(0)),
            },
        );
        Role::Leader(Leader {
            coalescer: self.clone(),
            key,
            id,
            sender,
        })
    }

    /// Keys with a flight in progress.
    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.lock().len()
    }

    /// Whether a flight for `key` is in progress.
    pub(crate) fn in_progress(&self, key: &K) -> bool {
        self.lock().contains_key(key)
    }
}

/// The one request fetching for a key. Dropping it ends the flight.
#[derive(Debug)]
pub(crate) struct Leader<K: Eq + Hash + Clone, T: Clone> {
    coalescer: Arc<Coalescer<K, T>>,
    key: K,
    id: u64,
    sender: watch::Sender<Option<T>>,
}

impl<K: Eq + Hash + Clone, T: Clone> Leader<K, T> {
    /// Publishes the outcome to every follower and ends the flight.
    pub(crate) fn complete(self, outcome: T) {
        self.sender.send_replace(Some(outcome));
    }

    /// How many followers wait right now.
    #[cfg(test)]
    pub(crate) fn waiters(&self) -> usize {
        self.coalescer
            .lock()
            .get(&self.key)
            .map_or(0, |f| f.waiters.load(Ordering::Acquire))
    }
}

impl<K: Eq + Hash + Clone, T: Clone> Drop for Leader<K, T> {
    fn drop(&mut self) {
        let mut flights = self.coalescer.lock();
        if flights.get(&self.key).is_some_and(|f| f.id == self.id) {
            flights.remove(&self.key);
        }
        // The sender drops after this, waking followers that got no outcome.
    }
}

/// A request waiting for a leader's outcome.
#[derive(Debug)]
pub(crate) struct Follower<T> {
    outcome: watch::Receiver<Option<T>>,
    waiters: Arc<AtomicUsize>,
}

impl<T: Clone> Follower<T> {
    pub(crate) async fn wait(mut self, timeout: Duration) -> Waited<T> {
        let waited = tokio::time::timeout(timeout, self.outcome.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(outcome)) => outcome.clone().map_or(Waited::Abandoned, Waited::Done),
            Ok(Err(_closed)) => Waited::Abandoned,
            Err(_elapsed) => Waited::TimedOut,
        }
    }
}

impl<T> Drop for Follower<T> {
    fn drop(&mut self) {
        self.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(5);

    fn leader(role: Role<&'static str, u32>) -> Leader<&'static str, u32> {
        match role {
            Role::Leader(l) => l,
            other => panic!("expected a leader, got {other:?}"),
        }
    }

    fn follower(role: Role<&'static str, u32>) -> Follower<u32> {
        match role {
            Role::Follower(f) => f,
            other => panic!("expected a follower, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_first_leads_and_the_others_get_its_outcome() {
        let coalescer = Coalescer::new(100);
        let lead = leader(coalescer.join("k"));
        let followers: Vec<_> = (0..10).map(|_| follower(coalescer.join("k"))).collect();
        assert_eq!(lead.waiters(), 10);
        let waits = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for f in followers {
                outcomes.push(f.wait(LONG).await);
            }
            outcomes
        });
        tokio::task::yield_now().await;
        lead.complete(7);
        let outcomes = waits.await.unwrap();
        assert!(
            outcomes.iter().all(|o| *o == Waited::Done(7)),
            "{outcomes:?}"
        );
        assert_eq!(coalescer.in_flight(), 0);
    }

    #[tokio::test]
    async fn keys_do_not_share_flights_and_a_finished_flight_starts_anew() {
        let coalescer = Coalescer::<&str, u32>::new(100);
        let a = leader(coalescer.join("a"));
        let _b = leader(coalescer.join("b"));
        assert!(coalescer.in_progress(&"a") && !coalescer.in_progress(&"c"));
        a.complete(1);
        assert!(!coalescer.in_progress(&"a"));
        let _again = leader(coalescer.join("a"));
    }

    #[tokio::test]
    async fn a_dropped_leader_wakes_its_followers_at_once() {
        let coalescer = Coalescer::new(100);
        let lead = leader(coalescer.join("k"));
        let f = follower(coalescer.join("k"));
        drop(lead);
        assert_eq!(f.wait(LONG).await, Waited::Abandoned);
        assert_eq!(coalescer.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_follower_waits_no_longer_than_its_timeout() {
        let coalescer = Coalescer::new(100);
        let _lead = leader(coalescer.join("k"));
        let f = follower(coalescer.join("k"));
        assert_eq!(f.wait(Duration::from_millis(50)).await, Waited::TimedOut);
    }

    #[tokio::test]
    async fn waiters_beyond_the_bound_fetch_alone() {
        let coalescer = Coalescer::<&str, u32>::new(2);
        let lead = leader(coalescer.join("k"));
        let f1 = follower(coalescer.join("k"));
        let _f2 = follower(coalescer.join("k"));
        assert!(matches!(coalescer.join("k"), Role::Overflow));
        drop(f1);
        assert_eq!(lead.waiters(), 1);
        let _f3 = follower(coalescer.join("k"));
    }
}
