//! api-rest and api-cache started inside the test process on port 0, configured
//! through the same variables (and the same envy parsing) as the binaries.

use std::sync::atomic::{AtomicU32, Ordering};

use service_kit::RuntimeConfig;
use service_kit::config::from_vars;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::sample;

/// `[("NAME", "value")]` as owned pairs.
pub fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A service running in the test's runtime.
#[derive(Debug)]
pub struct Running {
    pub port: u16,
    /// Its admin port: metrics, readiness (and api-rest's change feed).
    pub admin_port: u16,
    /// api-cache's `CACHE_KEY_PREFIX` (empty for api-rest).
    key_prefix: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

impl Running {
    fn new<F>(ports: (u16, u16), run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(run(stopped));
        let (port, admin_port) = ports;
        Self {
            port,
            admin_port,
            key_prefix: String::new(),
            stop: Some(stop),
            task: Some(task),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("http client"),
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.port)
    }

    pub async fn get(&self, path_and_query: &str) -> reqwest::Response {
        self.http
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("request failed")
    }

    /// A URL on the admin port.
    pub fn admin_url(&self, path_and_query: &str) -> String {
        format!("http://127.0.0.1:{}{path_and_query}", self.admin_port)
    }

    /// GET on the admin port.
    pub async fn admin(&self, path_and_query: &str) -> reqwest::Response {
        self.http
            .get(self.admin_url(path_and_query))
            .send()
            .await
            .expect("request failed")
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.http
    }

    /// Waits until an api-cache has heard its origin's change feed (fails after 10 s).
    ///
    /// Until the feed's first event the cache knows no data version, and answers
    /// it stores without one (e.g. `/`) are outdated by that event: on a busy
    /// machine a HIT would otherwise turn into a MISS mid-test.
    pub async fn wait_for_change_feed(&self) {
        let heard = crate::eventually(std::time::Duration::from_secs(10), || async {
            let ready: Option<serde_json::Value> = self.admin("/readyz").await.json().await.ok();
            ready.and_then(|r| r["data_version"].as_u64()).unwrap_or(0) >= 1
        })
        .await;
        assert!(heard, "api-cache never heard api-rest's change feed");
    }

    /// The key prefix of an api-cache (to start more replicas sharing its keys).
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The service's `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.admin("/metrics")
            .await
            .text()
            .await
            .expect("metrics body")
    }

    /// The sum of a metric's series whose labels include `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample(&self.metrics().await, name, labels)
    }

    /// Shuts the service down (as on SIGTERM) and waits until it has stopped.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("service task panicked")
                .expect("service failed");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// api-rest for tests.
pub type TestRest = Running;
/// api-cache for tests.
pub type TestCache = Running;

/// Starts api-rest with these variables (plus `API_REST_PORT=0`); later pairs win.
pub async fn spawn_rest(env: Vec<(String, String)>) -> TestRest {
    crate::init_test_logs();
    let mut env = env;
    env.push(("API_REST_PORT".into(), "0".into()));
    env.push(("API_REST_ADMIN_PORT".into(), "0".into()));
    let config = from_vars::<api_rest::Config, _>(dedup(env))
        .and_then(api_rest::Config::validate)
        .expect("api-rest configuration");
    let app = api_rest::Application::build(config, RuntimeConfig::for_tests())
        .await
        .expect("api-rest failed to start");
    Running::new((app.port(), app.admin_port()), |stopped| {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
    })
}

/// A key prefix no other test uses, so tests can share one Redis.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The variables api-cache needs to reach `rest` (its change feed too) and
/// Redis on `redis_port`.
pub fn cache_env_for(redis_port: u16, rest: &TestRest) -> Vec<(String, String)> {
    let mut env = cache_env(redis_port, rest.port);
    env.push(("BACKEND_ADMIN_PORT".into(), rest.admin_port.to_string()));
    env
}

/// The variables api-cache needs to reach Redis on `redis_port` and an origin on `backend_port`.
///
/// The Redis timeout is raised from its 50 ms default: dozens of apps share two
/// cores and one Redis during a test run, and a timed-out lock or write would turn
/// a test about coalescing or purging into one about timeouts. Tests about
/// timeouts set their own.
pub fn cache_env(redis_port: u16, backend_port: u16) -> Vec<(String, String)> {
    vars(&[
        ("REDIS_HOST", "127.0.0.1"),
        ("REDIS_PORT", &redis_port.to_string()),
        ("REDIS_TIMEOUT_MS", "1000"),
        ("BACKEND_HOST", "127.0.0.1"),
        ("BACKEND_PORT", &backend_port.to_string()),
        ("CACHE_KEY_PREFIX", &unique_prefix()),
    ])
}

/// Starts api-cache with these variables (plus `API_CACHE_PORT=0`); later pairs win.
pub async fn spawn_cache(env: Vec<(String, String)>) -> TestCache {
    crate::init_test_logs();
    let mut env = env;
    env.push(("API_CACHE_PORT".into(), "0".into()));
    env.push(("API_CACHE_ADMIN_PORT".into(), "0".into()));
    let config = from_vars::<api_cache::Config, _>(dedup(env))
        .and_then(api_cache::Config::validate)
        .expect("api-cache configuration");
    let key_prefix = config.cache_key_prefix.clone();
    let app = api_cache::Application::build(config, RuntimeConfig::for_tests())
        .await
        .expect("api-cache failed to start");
    let mut running = Running::new((app.port(), app.admin_port()), |stopped| {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
    });
    running.key_prefix = key_prefix;
    running
}

/// Keeps the last value of each variable, as a shell would.
fn dedup(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in env {
        out.retain(|(existing, _)| *existing != k);
        out.push((k, v));
    }
    out
}

/// A database, api-rest on it, and api-cache in front using the shared Redis.
#[derive(Debug)]
pub struct Stack {
    pub db: crate::TestDatabase,
    pub rest: TestRest,
    pub cache: TestCache,
}

impl Stack {
    /// The whole stack; `cache_vars` are added to (and override) api-cache's variables.
    pub async fn spawn(cache_vars: &[(&str, &str)]) -> Self {
        Self::spawn_with(&[], cache_vars).await
    }

    /// The whole stack, with variables for api-rest too.
    pub async fn spawn_with(rest_vars: &[(&str, &str)], cache_vars: &[(&str, &str)]) -> Self {
        let db = crate::PostgresServer::shared().create_database();
        let mut rest_env = db.rest_env();
        rest_env.extend(vars(rest_vars));
        let rest = spawn_rest(rest_env).await;
        let mut env = cache_env_for(crate::RedisServer::shared().port(), &rest);
        env.extend(vars(cache_vars));
        let follows_feed = !cache_vars
            .iter()
            .any(|(name, value)| *name == "BACKEND_CHANGES_PATH" && value.is_empty());
        let cache = spawn_cache(env).await;
        if follows_feed {
            cache.wait_for_change_feed().await;
        }
        Self { db, rest, cache }
    }

    /// Requests api-rest has answered on `/air_quality` so far (from its own metrics).
    pub async fn backend_requests(&self) -> f64 {
        self.rest
            .metric("http_requests_total", &[("route", "/air_quality")])
            .await
    }
}
