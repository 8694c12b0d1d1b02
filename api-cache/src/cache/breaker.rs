//! A circuit breaker for Redis: after `failures` consecutive failed operations
//! it opens, and for `cooldown` no operation is attempted (so an outage costs
//! no timeout per request); then one probe is let through (half-open): its
//! success closes the breaker, its failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The `to` label of `api_cache_redis_breaker_transitions_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "halfopen",
        }
    }

    /// The gauge value: 0 closed, 1 open, 2 half-open.
    pub(crate) fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probe_in_flight: bool,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    failures: u32,
    cooldown: Duration,
    inner: Mutex<Inner>,
}

/// Permission to run one operation; report how it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit {
    Normal,
    /// The half-open probe.
    Probe,
}

impl Breaker {
    pub(crate) fn new(failures: u32, cooldown: Duration) -> Self {
        Self {
            failures: failures.max(1),
            cooldown,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                opened_at: None,
                probe_in_flight: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn state(&self) -> State {
        self.lock().state
    }

    /// Whether an operation may run now.
    pub(crate) fn allow(&self, now: Instant) -> Option<Permit> {
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Some(Permit::Normal),
            State::Open => {
                let cooled = inner
                    .opened_at
                    .is_none_or(|at| now.duration_since(at) >= self.cooldown);
                if cooled {
                    inner.state = State::HalfOpen;
                    inner.probe_in_flight = true;
                    Some(Permit::Probe)
                } else {
                    None
                }
            }
            State::HalfOpen if !inner.probe_in_flight => {
                inner.probe_in_flight = true;
                Some(Permit::Probe)
            }
            State::HalfOpen => None,
        }
    }

    /// Forgets a permit whose operation was abandoned before it finished (its
    /// future dropped): a half-open breaker may probe again.
    pub(crate) fn abandon(&self, permit: Permit) {
        if permit == Permit::Probe {
            self.lock().probe_in_flight = false;
        }
    }

    /// Records an operation's result; returns the new state if it changed.
    pub(crate) fn record(&self, permit: Permit, success: bool, now: Instant) -> Option<State> {
        let mut inner = self.lock();
        let before = inner.state;
        if permit == Permit::Probe {
            inner.probe_in_flight = false;
        }
        if success {
            inner.consecutive_failures = 0;
            // Only the probe closes an open breaker: an operation let through
            // before it opened may succeed (on a cluster, on a shard that is
            // up) while the failures go on.
            if inner.state != State::Open || permit == Permit::Probe {
                inner.state = State::Closed;
                inner.opened_at = None;
            }
        } else {
            inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
            if permit == Permit::Probe || inner.consecutive_failures >= self.failures {
                inner.state = State::Open;
                inner.opened_at = Some(now);
            }
        }
        (inner.state != before).then_some(inner.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOLDOWN: Duration = Duration::from_secs(1);

    #[test]
    fn opens_after_consecutive_failures_and_skips_calls_while_open() {
        let breaker = Breaker::new(3, COOLDOWN);
        let t0 = Instant::now();
        for _ in 0..2 {
            let permit = breaker.allow(t0).unwrap();
            assert_eq!(breaker.record(permit, false, t0), None);
        }
        let permit = breaker.allow(t0).unwrap();
        assert_eq!(breaker.record(permit, false, t0), Some(State::Open));
        assert_eq!(breaker.allow(t0 + Duration::from_millis(500)), None);
    }

    #[test]
    fn a_late_success_of_an_earlier_operation_leaves_an_open_breaker_open() {
        let breaker = Breaker::new(1, COOLDOWN);
        let t0 = Instant::now();
        let earlier = breaker.allow(t0).unwrap();
        let failing = breaker.allow(t0).unwrap();
        assert_eq!(breaker.record(failing, false, t0), Some(State::Open));
        assert_eq!(breaker.record(earlier, true, t0), None);
        assert_eq!(breaker.allow(t0), None, "still open");
        let probe = breaker.allow(t0 + COOLDOWN).unwrap();
        assert_eq!(
            breaker.record(probe, true, t0 + COOLDOWN),
            Some(State::Closed)
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, COOLDOWN);
        let t0 = Instant::now();
        breaker.record(Permit::Normal, false, t0);
        breaker.record(Permit::Normal, true, t0);
        breaker.record(Permit::Normal, false, t0);
        assert_eq!(breaker.state(), State::Closed);
    }

    #[test]
    fn an_abandoned_probe_frees_the_way_for_another() {
        let breaker = Breaker::new(1, COOLDOWN);
        let t0 = Instant::now();
        breaker.record(Permit::Normal, false, t0);
        let probe = breaker.allow(t0 + COOLDOWN).unwrap();
        breaker.abandon(probe);
        assert_eq!(breaker.allow(t0 + COOLDOWN), Some(Permit::Probe));
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let breaker = Breaker::new(1, COOLDOWN);
        let t0 = Instant::now();
        breaker.record(Permit::Normal, false, t0);
        let later = t0 + COOLDOWN;
        assert_eq!(breaker.allow(later), Some(Permit::Probe));
        assert_eq!(breaker.state(), State::HalfOpen);
        assert_eq!(breaker.allow(later), None, "one probe at a time");
        assert_eq!(
            breaker.record(Permit::Probe, false, later),
            Some(State::Open)
        );
        let again = later + COOLDOWN;
        assert_eq!(breaker.allow(again), Some(Permit::Probe));
        assert_eq!(
            breaker.record(Permit::Probe, true, again),
            Some(State::Closed)
        );
        assert_eq!(breaker.allow(again), Some(Permit::Normal));
    }
}
