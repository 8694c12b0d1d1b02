//! A Prometheus registry per application instance.
//!
//! Each `Application` owns its own recorder instead of installing a process-wide
//! one: two services (or several instances of one) can then live in one test
//! process and each `/metrics` shows only its own traffic. Code records through
//! the usual `metrics::counter!`/`histogram!` macros inside [`Metrics::scope`].

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use tokio_util::sync::CancellationToken;

/// Latency buckets in seconds, from a Redis hit (sub-millisecond) to a full table stream.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Size buckets in bytes, for stored entries and bodies.
pub const SIZE_BUCKETS: &[f64] = &[
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// How often histogram samples are folded into buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Cheap to clone; all clones share one registry.
#[derive(Clone)]
pub struct Metrics {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    /// `process_*` metrics (CPU, memory, threads, descriptors), read at each scrape.
    process: Arc<metrics_process::Collector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_bytes".into()), SIZE_BUCKETS))
            .map(PrometheusBuilder::build_recorder)
            // The bucket lists above are non-empty constants.
            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
        let handle = recorder.handle();
        let metrics = Self {
            recorder: Arc::new(recorder),
            handle,
            process: Arc::new(metrics_process::Collector::default()),
        };
        metrics.scope(|| {
            metrics.process.describe();
            metrics::describe_counter!(
                "log_lines_dropped_total",
                "Log lines dropped because stdout did not keep up."
            );
        });
        metrics
    }

    /// Folds recorded histogram samples into their buckets every few seconds
    /// until `stopped`. Without it, samples pile up between scrapes, and
    /// without scrapes memory grows with every request.
    pub fn spawn_upkeep(&self, stopped: CancellationToken) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(UPKEEP_INTERVAL);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stopped.cancelled() => return,
                    _ = every.tick() => handle.run_upkeep(),
                }
            }
        });
    }

    /// Runs `f` with this registry as the target of the `metrics` macros.
    /// `f` is synchronous: the registry is not carried across an `.await`.
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// The Prometheus text exposition of everything recorded so far, with the
    /// process metrics read now.
    pub fn render(&self) -> String {
        self.scope(|| {
            self.process.collect();
            metrics::counter!("log_lines_dropped_total")
                .absolute(crate::telemetry::dropped_log_lines());
        });
        self.handle.render()
    }
}
