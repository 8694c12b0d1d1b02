//! The test harness: real PostgreSQL and Redis servers started from the system
//! binaries on free ports, databases loaded by `postgres/init-script.sh`, and the
//! two services started in the test process on port 0.
//!
//! Servers shared by a test binary ([`PostgresServer::shared`],
//! [`RedisServer::shared`]) live until the process ends; a test that stops or
//! restarts a server starts its own. Every server runs under a small watchdog
//! that stops it by PID when the test process closes its end of a pipe, which
//! happens even when the process is killed, so nothing outlives a test run.

pub mod apps;
pub mod metrics;
pub mod postgres;
pub mod process;
pub mod redis;

pub use apps::{TestCache, TestRest};
pub use postgres::{PostgresServer, TestDatabase};
pub use redis::RedisServer;

use std::path::PathBuf;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Logs to stderr when `TEST_LOG` is set (`TEST_LOG=1 cargo test -- --nocapture`).
pub fn init_test_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        service_kit::telemetry::init_tracing("pretty");
    }
}

/// Polls `check` until it returns true or `timeout` passes; returns the last answer.
/// For states that arrive by themselves (a reconnection), not for timing claims.
pub async fn eventually<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
