//! api-cache's own metrics, registered once at start-up: recording one on the
//! hit path is an atomic add on a handle, with no label to build or look up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Unit};
use service_kit::Metrics;

use crate::cache::breaker;
use crate::cache::status::Outcome;
use crate::storage::{Lookup, StoreError};

/// Redis operations, each with its own time and error series.
const REDIS_OPERATIONS: &[&str] = &[
    "get", "store", "lock", "pttl", "unlock", "publish", "ping", "zrange", "zscan", "del", "set",
];

const BREAKER_STATES: [breaker::State; 3] = [
    breaker::State::Closed,
    breaker::State::Open,
    breaker::State::HalfOpen,
];

/// Cheap to clone; clones share the handles.
#[derive(Clone)]
pub(crate) struct CacheMetrics(Arc<Handles>);

impl std::fmt::Debug for CacheMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheMetrics").finish_non_exhaustive()
    }
}

struct Handles {
    registry: Metrics,
    outcomes: Vec<Counter>,
    local: [Counter; 2],
    shared: [Counter; 3],
    stored: Counter,
    stored_bytes: Histogram,
    store_errors: Counter,
    store_skipped: Counter,
    redis: HashMap<&'static str, (Histogram, Counter)>,
    breaker_state: Gauge,
    breaker_transitions: Vec<Counter>,
    local_bytes: Gauge,
    data_version: Gauge,
    /// By origin status (a bounded set: three digits, `timeout`, `error`).
    origin: Mutex<HashMap<String, (Counter, Histogram)>>,
}

impl CacheMetrics {
    /// Describes and registers every series in `registry`.
    pub(crate) fn register(registry: &Metrics) -> Self {
        registry.scope(|| {
            describe();
            let handles = Handles {
                registry: registry.clone(),
                outcomes: Outcome::ALL
                    .iter()
                    .map(|o| metrics::counter!("api_cache_requests_total", "outcome" => o.label()))
                    .collect(),
                local: ["hit", "miss"].map(|result| {
                    metrics::counter!("api_cache_lookups_total", "tier" => "local", "result" => result)
                }),
                shared: ["hit", "miss", "unavailable"].map(|result| {
                    metrics::counter!("api_cache_lookups_total", "tier" => "redis", "result" => result)
                }),
                stored: metrics::counter!("api_cache_stored_total"),
                stored_bytes: metrics::histogram!("api_cache_stored_body_bytes"),
                store_errors: metrics::counter!("api_cache_store_errors_total"),
                store_skipped: metrics::counter!("api_cache_store_skipped_total"),
                redis: REDIS_OPERATIONS
                    .iter()
                    .map(|&operation| {
                        let time = metrics::histogram!("api_cache_redis_operation_duration_seconds", "operation" => operation);
                        let errors = metrics::counter!("api_cache_redis_errors_total", "operation" => operation);
                        (operation, (time, errors))
                    })
                    .collect(),
                breaker_state: metrics::gauge!("api_cache_redis_breaker_state"),
                breaker_transitions: BREAKER_STATES
                    .iter()
                    .map(|state| {
                        metrics::counter!("api_cache_redis_breaker_transitions_total", "to" => state.label())
                    })
                    .collect(),
                local_bytes: metrics::gauge!("api_cache_local_bytes"),
                data_version: metrics::gauge!("api_cache_data_version"),
                origin: Mutex::default(),
            };
            // Series that exist from the start, so rates and alerts have data at once.
            handles.outcomes.iter().for_each(|c| c.absolute(0));
            handles.redis.values().for_each(|(_, errors)| errors.absolute(0));
            handles.breaker_state.set(0.0);
            Self(Arc::new(handles))
        })
    }

    pub(crate) fn outcome(&self, outcome: Outcome) {
        self.0.outcomes[outcome as usize].increment(1);
    }

    pub(crate) fn local_lookup(&self, hit: bool) {
        self.0.local[usize::from(!hit)].increment(1);
    }

    pub(crate) fn shared_lookup(&self, lookup: &Lookup) {
        let index = match lookup {
            Lookup::Found(_) => 0,
            Lookup::Absent { .. } => 1,
            Lookup::Unavailable => 2,
        };
        self.0.shared[index].increment(1);
    }

    pub(crate) fn stored(&self, result: &Result<(), StoreError>, body_bytes: usize) {
        match result {
            Ok(()) => {
                self.0.stored.increment(1);
                self.0.stored_bytes.record(body_bytes as f64);
            }
            Err(_) => self.0.store_errors.increment(1),
        }
    }

    pub(crate) fn store_skipped(&self) {
        self.0.store_skipped.increment(1);
    }

    pub(crate) fn redis_operation(
        &self,
        operation: &'static str,
        elapsed: Duration,
        ok: bool,
        transition: Option<breaker::State>,
    ) {
        if let Some((time, errors)) = self.0.redis.get(operation) {
            time.record(elapsed.as_secs_f64());
            if !ok {
                errors.increment(1);
            }
        }
        if let Some(state) = transition {
            self.0.breaker_state.set(state.gauge());
            if let Some(i) = BREAKER_STATES.iter().position(|s| *s == state) {
                self.0.breaker_transitions[i].increment(1);
            }
        }
    }

    /// An origin request by status (or `timeout`/`error`), with its time to headers.
    pub(crate) fn origin(&self, status: &str, elapsed: Duration) {
        let mut series = self
            .0
            .origin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (count, time) = series.entry(status.to_owned()).or_insert_with(|| {
            self.0.registry.scope(|| {
                let label = status.to_owned();
                (
                    metrics::counter!("api_cache_origin_requests_total", "status" => label.clone()),
                    metrics::histogram!("api_cache_origin_request_duration_seconds", "status" => label),
                )
            })
        });
        count.increment(1);
        time.record(elapsed.as_secs_f64());
    }

    pub(crate) fn purge(&self, kind: &'static str, soft: bool) {
        self.0.registry.scope(|| {
            metrics::counter!("api_cache_purges_total", "kind" => kind, "soft" => if soft { "true" } else { "false" })
                .increment(1);
        });
    }

    /// Gauges read at scrape time.
    pub(crate) fn set_state(&self, local_bytes: u64, data_version: u64) {
        self.0.local_bytes.set(local_bytes as f64);
        self.0.data_version.set(data_version as f64);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "api_cache_requests_total",
        "Proxied requests by outcome: hit, stale (served stale), miss, revalidated (origin said 304), collapsed (waited for an identical fetch), bypass (cache not used), pass (other methods), error."
    );
    describe_counter!(
        "api_cache_origin_requests_total",
        "Requests sent to the origin, by status (or timeout/error)."
    );
    describe_histogram!(
        "api_cache_origin_request_duration_seconds",
        Unit::Seconds,
        "Time from sending a request to the origin to its response headers, by status."
    );
    describe_counter!(
        "api_cache_lookups_total",
        "Cache lookups by tier (local, redis) and result (hit, miss, unavailable)."
    );
    describe_counter!("api_cache_stored_total", "Entries written to Redis.");
    describe_histogram!(
        "api_cache_stored_body_bytes",
        Unit::Bytes,
        "Stored body size (as stored: gzip for text)."
    );
    describe_counter!(
        "api_cache_store_errors_total",
        "Writes to Redis that failed."
    );
    describe_counter!(
        "api_cache_store_skipped_total",
        "Writes to Redis skipped: too many in flight."
    );
    describe_histogram!(
        "api_cache_redis_operation_duration_seconds",
        Unit::Seconds,
        "Redis operation time, by operation."
    );
    describe_counter!(
        "api_cache_redis_errors_total",
        "Failed or timed-out Redis operations, by operation."
    );
    describe_gauge!(
        "api_cache_redis_breaker_state",
        "Redis circuit breaker: 0 closed, 1 open, 2 half-open."
    );
    describe_counter!(
        "api_cache_redis_breaker_transitions_total",
        "Breaker state changes, by new state."
    );
    describe_counter!(
        "api_cache_purges_total",
        "Purges, by kind (url, prefix, surrogate_key) and softness."
    );
    describe_gauge!(
        "api_cache_local_bytes",
        Unit::Bytes,
        "Bytes held by the in-process tier."
    );
    describe_gauge!(
        "api_cache_data_version",
        "The origin's data version last announced on its change feed."
    );
}
