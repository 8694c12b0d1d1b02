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
pub mod executables;
pub mod load;
pub mod metrics;
pub mod origin;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod redis_cluster;

pub use apps::{TestCache, TestRest};
pub use postgres::{PostgresServer, TestDatabase};
pub use redis::RedisServer;
pub use redis_cluster::RedisCluster;

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
        std::mem::forget(service_kit::telemetry::init_tracing("pretty"));
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

/// The path of a workspace binary (`api-rest`, `api-cache`), built on first use
/// with the same profile as the tests. `--workspace` resolves the same features
/// as `cargo test --workspace`, so the dependencies already built are reused.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let profile_dir = BUILT.get_or_init(|| {
        // target/<profile>/deps/<test binary> -> target/<profile>
        let profile_dir = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent()?.parent().map(PathBuf::from))
            .unwrap_or_default();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command
            .args(["build", "--quiet", "--workspace", "--bins"])
            .current_dir(repo_root());
        // Cargo gives the test process its package's variables; passed on, they
        // would make build scripts (ring's reads CARGO_MANIFEST_DIR) rebuild.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name == "CARGO_MANIFEST_DIR"
                || name == "CARGO_MANIFEST_PATH"
                || name == "CARGO_CRATE_NAME"
                || name == "CARGO_PRIMARY_PACKAGE"
                || name == "CARGO_TARGET_TMPDIR"
                || name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_")
            {
                command.env_remove(name.as_ref());
            }
        }
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            command.arg("--release");
        }
        let status = command.status().expect("cannot run cargo build");
        assert!(status.success(), "cargo build --workspace --bins failed");
        profile_dir
    });
    profile_dir.join(name)
}

/// A row of the committed CSV: time (UTC), station, and the six readings
/// (so2, no2, co, o3, pm10, pm2_5; `None` when empty).
pub type CsvRow = (time::PrimitiveDateTime, String, [Option<f64>; 6]);

/// `postgres/air_quality.csv`, in file order: what a fresh database holds.
pub fn committed_rows() -> Vec<CsvRow> {
    let text = std::fs::read_to_string(repo_root().join("postgres/air_quality.csv"))
        .expect("postgres/air_quality.csv");
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"
    );
    text.lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let time = time::PrimitiveDateTime::parse(fields[0], format).expect("a CSV time");
            let readings = std::array::from_fn(|i| fields[2 + i].parse::<f64>().ok());
            (time, fields[1].to_owned(), readings)
        })
        .collect()
}
