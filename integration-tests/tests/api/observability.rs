//! Metrics, logs, request ids and graceful shutdown, as operators see them.

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use integration_tests::apps::Stack;
use integration_tests::metrics::sample;
use integration_tests::origin::{Reply, TestOrigin};
use integration_tests::process::{KillOnDrop, free_port, wait_for_port};
use integration_tests::{PostgresServer, RedisServer, binary, eventually, repo_root};
use serde_json::Value;

#[tokio::test]
async fn metrics_move_as_traffic_says_one_miss_then_one_hit() {
    let stack = Stack::spawn(&[]).await;
    let cache_before = stack.cache.metrics().await;
    let rest_before = stack.rest.metrics().await;
    let mut rows = 0;
    for _ in 0..2 {
        let body: Vec<Value> = stack
            .cache
            .get("/air_quality?limit=7")
            .await
            .json()
            .await
            .unwrap();
        rows = body.len();
    }
    let cache_after = stack.cache.metrics().await;
    let rest_after = stack.rest.metrics().await;
    let moved = |before: &str, after: &str, name: &str, labels: &[(&str, &str)]| {
        sample(after, name, labels) - sample(before, name, labels)
    };
    assert_eq!(
        moved(
            &cache_before,
            &cache_after,
            "api_cache_requests_total",
            &[("outcome", "miss")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &cache_before,
            &cache_after,
            "api_cache_requests_total",
            &[("outcome", "hit")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &cache_before,
            &cache_after,
            "api_cache_origin_requests_total",
            &[("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &cache_before,
            &cache_after,
            "http_requests_total",
            &[("route", "/{*path}"), ("status", "200")]
        ),
        2.0,
        "api-cache labels proxied requests by its matched route, not the raw path"
    );
    assert_eq!(
        moved(
            &rest_before,
            &rest_after,
            "http_requests_total",
            &[("route", "/air_quality"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            &rest_before,
            &rest_after,
            "api_rest_rows_streamed_total",
            &[]
        ),
        rows as f64
    );
    assert_eq!(
        moved(
            &cache_before,
            &cache_after,
            "api_cache_origin_request_duration_seconds_count",
            &[]
        ),
        1.0
    );
    assert!(
        sample(
            &rest_after,
            "api_rest_query_duration_seconds_count",
            &[("phase", "first_row")]
        ) >= 1.0
    );
    for text in [&cache_after, &rest_after] {
        assert!(sample(text, "process_resident_memory_bytes", &[]) > 1_000_000.0);
        assert!(text.contains("# TYPE process_cpu_seconds_total"));
        assert!(text.contains("http_requests_in_flight"));
    }
    assert!(rest_after.contains("api_rest_db_pool_connections{state=\"idle\"}"));
}

/// Metric names in PromQL expressions: ours and the process ones.
fn metric_names(expression: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut current = String::new();
    for c in expression.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
        } else {
            let name = std::mem::take(&mut current);
            if ["api_cache_", "api_rest_", "http_", "process_"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                let base = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(&name)
                    .to_owned();
                names.insert(base);
            }
        }
    }
    names
}

#[tokio::test]
async fn every_metric_the_dashboard_and_the_alerts_use_is_exported() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("grafana/dashboards/air-quality-api.json"))
            .unwrap(),
    )
    .unwrap();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            used.extend(metric_names(target["expr"].as_str().unwrap()));
            assert_eq!(
                target["datasource"]["uid"], "prometheus",
                "{}",
                panel["title"]
            );
        }
    }
    let provisioned = std::fs::read_to_string(
        repo_root().join("grafana/provisioning/datasources/prometheus.yml"),
    )
    .unwrap();
    assert!(
        provisioned.contains("uid: prometheus"),
        "the dashboard's datasource is the provisioned one"
    );
    let alerts = std::fs::read_to_string(repo_root().join("prometheus/alerts.yml")).unwrap();
    let alert_docs = yaml_rust2::YamlLoader::load_from_str(&alerts).unwrap();
    let mut alert_count = 0;
    for rule in alert_docs[0]["groups"][0]["rules"].as_vec().unwrap() {
        used.extend(metric_names(rule["expr"].as_str().unwrap()));
        alert_count += 1;
    }
    assert!(alert_count >= 4);
    assert!(used.len() > 15, "{used:?}");

    // Traffic that creates every series: a miss, a hit, a store, a refusal, readiness.
    let stack = Stack::spawn(&[]).await;
    for path in [
        "/air_quality?limit=3",
        "/air_quality?limit=3",
        "/air_quality?limit=0",
    ] {
        stack.cache.get(path).await.text().await.unwrap();
    }
    stack.rest.admin("/readyz").await.text().await.unwrap();
    let stored = eventually(Duration::from_secs(5), || async {
        stack.cache.metric("api_cache_stored_total", &[]).await >= 1.0
    })
    .await;
    assert!(stored);
    let exported = format!(
        "{}\n{}",
        stack.cache.metrics().await,
        stack.rest.metrics().await
    );
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !exported.contains(&format!("# TYPE {name} ")))
        .collect();
    assert!(
        missing.is_empty(),
        "used in the dashboard or alerts, exported by neither service: {missing:?}"
    );
}

/// Runs a binary with `vars`, its stdout and stderr captured to a file.
fn start(name: &str, vars: &[(&str, String)], log: &std::path::Path) -> KillOnDrop {
    let file = std::fs::File::create(log).unwrap();
    KillOnDrop(
        Command::new(binary(name))
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap(),
    )
}

fn sigterm(child: &KillOnDrop) {
    Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
}

#[tokio::test]
async fn logs_carry_request_ids_and_never_a_secret() {
    const DB_PASSWORD: &str = integration_tests::postgres::API_PASSWORD;
    const WRONG_DB_PASSWORD: &str = "wrong-db-password-3f9a";
    const REDIS_PASSWORD: &str = "redis-secret-8c1d";
    const PURGE_TOKEN: &str = "purge-token-51be";
    const PRESENTED_TOKEN: &str = "presented-token-77aa";
    let redis = RedisServer::start_with_password(REDIS_PASSWORD);
    let db = PostgresServer::shared().create_database();
    let dir = tempfile::tempdir().unwrap();
    let (rest_port, bad_rest_port, cache_port) = (free_port(), free_port(), free_port());
    let (rest_admin, bad_rest_admin, cache_admin) = (free_port(), free_port(), free_port());
    let rest_vars = |port: u16, admin: u16, password: &str| -> Vec<(&'static str, String)> {
        vec![
            ("API_REST_PORT", port.to_string()),
            ("API_REST_ADMIN_PORT", admin.to_string()),
            ("POSTGRES_HOST", "127.0.0.1".into()),
            ("POSTGRES_PORT", db.port.to_string()),
            ("POSTGRES_DB", db.name.clone()),
            ("POSTGRES_API_PASSWORD", password.to_owned()),
            ("BIND_ADDRESS", "127.0.0.1".into()),
            ("LOG_FORMAT", "json".into()),
            ("RUST_LOG", "debug".into()),
        ]
    };
    let rest = start(
        "api-rest",
        &rest_vars(rest_port, rest_admin, DB_PASSWORD),
        &dir.path().join("rest.log"),
    );
    let bad_rest = start(
        "api-rest",
        &rest_vars(bad_rest_port, bad_rest_admin, WRONG_DB_PASSWORD),
        &dir.path().join("bad-rest.log"),
    );
    let cache_vars = |redis_password: &str| -> Vec<(&'static str, String)> {
        vec![
            ("API_CACHE_PORT", cache_port.to_string()),
            ("API_CACHE_ADMIN_PORT", cache_admin.to_string()),
            ("BACKEND_HOST", "127.0.0.1".into()),
            ("BACKEND_PORT", rest_port.to_string()),
            ("BACKEND_ADMIN_PORT", rest_admin.to_string()),
            ("REDIS_HOST", "127.0.0.1".into()),
            ("REDIS_PORT", redis.port().to_string()),
            ("REDIS_PASSWORD", redis_password.to_owned()),
            ("CACHE_PURGE_TOKEN", PURGE_TOKEN.into()),
            ("BIND_ADDRESS", "127.0.0.1".into()),
            ("LOG_FORMAT", "json".into()),
            ("RUST_LOG", "debug".into()),
        ]
    };
    let cache = start(
        "api-cache",
        &cache_vars(REDIS_PASSWORD),
        &dir.path().join("cache.log"),
    );
    for port in [rest_port, bad_rest_port, cache_port] {
        assert!(wait_for_port(port, Duration::from_secs(10)));
    }
    let client = reqwest::Client::new();
    let url = |port: u16, path: &str| format!("http://127.0.0.1:{port}{path}");

    // An id given by the client is kept, passed to api-rest, and returned.
    let response = client
        .get(url(cache_port, "/air_quality?limit=2"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    response.text().await.unwrap();
    // Without one, an id is made (a UUID).
    let response = client
        .get(url(cache_port, "/air_quality?limit=3"))
        .send()
        .await
        .unwrap();
    let made = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(made.len(), 36, "{made}");
    response.text().await.unwrap();
    // Failures that log: a wrong purge token, a database refusing its password.
    let response = client
        .post(url(cache_admin, "/_cache/purge"))
        .bearer_auth(PRESENTED_TOKEN)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = client
        .get(url(bad_rest_port, "/air_quality"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    client
        .get(url(bad_rest_admin, "/readyz"))
        .send()
        .await
        .unwrap();
    sigterm(&rest);
    sigterm(&bad_rest);
    sigterm(&cache);
    drop((rest, bad_rest, cache));

    // And a cache refused by Redis (a wrong password): logs its errors too.
    let wrong = start(
        "api-cache",
        &cache_vars("not-the-redis-password"),
        &dir.path().join("wrong-redis.log"),
    );
    assert!(wait_for_port(cache_port, Duration::from_secs(10)));
    // A new client: the old one's pooled connections went with the old process.
    let client = reqwest::Client::new();
    client
        .get(url(cache_port, "/air_quality?limit=4"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sigterm(&wrong);
    drop(wrong);

    let mut logs = String::new();
    for file in ["rest.log", "bad-rest.log", "cache.log", "wrong-redis.log"] {
        std::fs::File::open(dir.path().join(file))
            .unwrap()
            .read_to_string(&mut logs)
            .unwrap();
    }
    for secret in [
        DB_PASSWORD,
        WRONG_DB_PASSWORD,
        REDIS_PASSWORD,
        "not-the-redis-password",
        PURGE_TOKEN,
        PRESENTED_TOKEN,
        "postgres://",
        "redis://",
    ] {
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "{secret} appears in the logs: {leaks:?}");
    }
    assert!(
        logs.contains("password authentication failed"),
        "the database refusal was logged"
    );

    // One JSON access line per request, with route, status, latency, cache outcome and id.
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "access")
        .collect();
    let traced: Vec<&Value> = access
        .iter()
        .filter(|l| l["request_id"] == "trace-me-42")
        .collect();
    assert_eq!(
        traced.len(),
        2,
        "logged once by api-cache and once by api-rest: {traced:?}"
    );
    let at_cache = traced
        .iter()
        .find(|l| l["route"] == "/{*path}")
        .expect("api-cache's line");
    assert_eq!(at_cache["cache"], "MISS");
    assert_eq!(at_cache["status"], 200);
    assert_eq!(at_cache["method"], "GET");
    assert!(at_cache["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(
        traced.iter().any(|l| l["route"] == "/air_quality"),
        "api-rest's line"
    );
    assert!(access.iter().any(|l| l["request_id"] == made.as_str()));
}

#[tokio::test]
async fn sigterm_turns_readiness_red_then_lets_in_flight_requests_finish() {
    let origin =
        TestOrigin::start(|_| Reply::ok("slow but sure").delayed(Duration::from_millis(2000)))
            .await;
    let (port, admin_port) = (free_port(), free_port());
    let vars = vec![
        ("API_CACHE_PORT", port.to_string()),
        ("API_CACHE_ADMIN_PORT", admin_port.to_string()),
        ("BACKEND_HOST", "127.0.0.1".to_owned()),
        ("BACKEND_PORT", origin.port.to_string()),
        ("BACKEND_CHANGES_PATH", String::new()),
        ("REDIS_HOST", "127.0.0.1".to_owned()),
        ("REDIS_PORT", RedisServer::shared().port().to_string()),
        ("BIND_ADDRESS", "127.0.0.1".to_owned()),
        ("SHUTDOWN_DRAIN_SECONDS", "1".to_owned()),
        ("SHUTDOWN_TIMEOUT_SECONDS", "10".to_owned()),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut server = start("api-cache", &vars, &dir.path().join("cache.log"));
    assert!(wait_for_port(port, Duration::from_secs(10)));
    let client = reqwest::Client::new();
    let url = move |path: &str| format!("http://127.0.0.1:{port}{path}");
    let admin = move |path: &str| format!("http://127.0.0.1:{admin_port}{path}");
    let in_flight = tokio::spawn({
        let client = client.clone();
        let url = url("/slow");
        async move {
            let response = client.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&server);
    // Draining: not ready any more, yet alive and still answering.
    let drained = eventually(Duration::from_millis(900), || async {
        client
            .get(admin("/readyz"))
            .send()
            .await
            .map(|r| r.status() == 503)
            .unwrap_or(false)
    })
    .await;
    assert!(drained, "readiness did not turn red on SIGTERM");
    assert_eq!(
        client.get(url("/healthz")).send().await.unwrap().status(),
        200
    );
    // The request that was in flight completes.
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "slow but sure"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let exited = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        exited.is_some_and(|s| s.success()),
        "the process did not stop cleanly: {exited:?}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still accepting after shutdown"
    );
    // Ctrl-C does the same for api-rest.
    let rest_port = free_port();
    let db = PostgresServer::shared().create_database();
    let rest = start(
        "api-rest",
        &[
            ("API_REST_PORT", rest_port.to_string()),
            ("API_REST_ADMIN_PORT", free_port().to_string()),
            ("POSTGRES_HOST", "127.0.0.1".to_owned()),
            ("POSTGRES_PORT", db.port.to_string()),
            ("POSTGRES_DB", db.name.clone()),
            ("POSTGRES_API_PASSWORD", db.api_password.clone()),
            ("BIND_ADDRESS", "127.0.0.1".to_owned()),
        ],
        &dir.path().join("rest.log"),
    );
    assert!(wait_for_port(rest_port, Duration::from_secs(10)));
    Command::new("kill")
        .args(["-INT", &rest.0.id().to_string()])
        .status()
        .unwrap();
    let mut rest = rest;
    let status = rest.0.wait().unwrap();
    assert!(status.success(), "Ctrl-C is a clean stop: {status}");
    let _ = Stdio::null();
}

#[tokio::test]
async fn surrogate_keys_reach_the_cache_but_not_its_clients() {
    let stack = Stack::spawn(&[]).await;
    let direct = stack
        .rest
        .get("/air_quality?id_entity=aq_salvia,aq_jaen&limit=1")
        .await;
    assert_eq!(direct.headers()["surrogate-key"], "aq_jaen aq_salvia");
    assert!(direct.headers().contains_key("data-version"));
    let all = stack.rest.get("/air_quality?limit=1").await;
    let stations = all.headers()["surrogate-key"].to_str().unwrap().to_owned();
    assert_eq!(
        stations.split(' ').count(),
        6,
        "every station of an unfiltered answer: {stations}"
    );
    let through = stack.cache.get("/air_quality?limit=1").await;
    assert!(through.headers().get("surrogate-key").is_none());
}
