//! api-cache under failure and change: grace and stale-if-error,
//! stale-while-revalidate, Redis outages, locks, the purge API. (What
//! replicas share through Redis — stampedes, purges, data changes — is in
//! `shared_store`, on one node and on a cluster.)

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use integration_tests::apps::{
    Stack, cache_env, cache_env_for, spawn_cache, spawn_rest, unique_prefix, vars,
};
use integration_tests::load::Load;
use integration_tests::origin::{Reply, TestOrigin};
use integration_tests::{PostgresServer, RedisServer, TestCache, eventually};
use serde_json::{Value, json};

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
}

async fn cache_for_origin(
    origin: &TestOrigin,
    redis_port: u16,
    extra: &[(&str, &str)],
) -> TestCache {
    let mut env = cache_env(redis_port, origin.port);
    env.push(("BACKEND_CHANGES_PATH".into(), String::new()));
    env.extend(vars(extra));
    spawn_cache(env).await
}

#[tokio::test]
async fn with_the_origin_killed_cached_keys_are_served_stale_for_the_grace_period() {
    let mut stack = Stack::spawn_with(
        &[("RESPONSE_MAX_AGE_SECONDS", "1")],
        &[("CACHE_GRACE_SECONDS", "4")],
    )
    .await;
    let warm = stack.cache.get("/air_quality?limit=5").await;
    let body = warm.bytes().await.unwrap();
    stack.rest.stop().await;
    let stored_at = Instant::now();

    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Stale, the origin down: the stored answer, for the whole grace period.
    while stored_at.elapsed() < Duration::from_millis(3500) {
        let response = stack.cache.get("/air_quality?limit=5").await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-cache"), "HIT");
        let status = header(&response, "cache-status");
        assert!(
            status.contains("fwd=stale; fwd-status=502")
                && status.ends_with("detail=stale-if-error"),
            "{status}"
        );
        assert_eq!(response.bytes().await.unwrap(), body);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A key never cached is a 502 problem.
    let response = stack.cache.get("/air_quality?limit=6").await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    // Past freshness plus grace, the entry is gone everywhere: the error shows.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let response = stack.cache.get("/air_quality?limit=5").await;
    assert_eq!(
        response.status(),
        502,
        "served stale beyond the grace period"
    );
    assert!(
        stack
            .cache
            .metric("api_cache_requests_total", &[("outcome", "stale")])
            .await
            >= 2.0
    );
}

#[tokio::test]
async fn a_failing_origin_is_covered_by_stale_if_error_unless_it_forbids_it() {
    let failing = Arc::new(AtomicUsize::new(0));
    let switch = failing.clone();
    let origin = TestOrigin::start(move |request| {
        if switch.load(Ordering::SeqCst) == 1 {
            return Reply::status(503).header("retry-after", "1");
        }
        let cc = if request.path() == "/strict" {
            "max-age=1, must-revalidate"
        } else {
            "max-age=1"
        };
        Reply::ok("good").header("cache-control", cc)
    })
    .await;
    let cache = cache_for_origin(&origin, RedisServer::shared().port(), &[]).await;
    for path in ["/lenient", "/strict"] {
        cache.get(path).await.bytes().await.unwrap();
    }
    failing.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let lenient = cache.get("/lenient").await;
    assert_eq!(lenient.status(), 200);
    assert!(
        header(&lenient, "cache-status").contains("fwd-status=503"),
        "{}",
        header(&lenient, "cache-status")
    );
    assert_eq!(lenient.text().await.unwrap(), "good");
    let strict = cache.get("/strict").await;
    assert_eq!(
        strict.status(),
        503,
        "must-revalidate forbids serving it stale"
    );
}

#[tokio::test]
async fn stale_while_revalidate_serves_at_once_and_refreshes_once_in_the_background() {
    let origin = TestOrigin::start(|request| {
        if request.header("if-none-match") == Some("\"v1\"") {
            return Reply::status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=1, stale-while-revalidate=30");
        }
        Reply::ok("content")
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=1, stale-while-revalidate=30")
    })
    .await;
    let cache = cache_for_origin(&origin, RedisServer::shared().port(), &[]).await;
    cache.get("/swr").await.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let responses = join_all((0..5).map(|_| cache.get("/swr"))).await;
    for response in responses {
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-cache"), "HIT");
        assert!(header(&response, "cache-status").ends_with("detail=stale-while-revalidate"));
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            origin.count("/swr") == 2
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        origin.count("/swr"),
        2,
        "one background refresh for five stale requests"
    );
    assert_eq!(origin.requests()[1].header("if-none-match"), Some("\"v1\""));
    let fresh = cache.get("/swr").await;
    assert!(
        header(&fresh, "cache-status").starts_with("api-cache; hit; ttl="),
        "{}",
        header(&fresh, "cache-status")
    );
}

#[tokio::test]
async fn redis_killed_under_load_fails_no_request_and_caching_resumes() {
    let mut redis = RedisServer::start();
    let db = PostgresServer::shared().create_database();
    let rest = spawn_rest(db.rest_env()).await;
    let prefix = unique_prefix();
    let mut env = cache_env_for(redis.port(), &rest);
    // Without the local tier every request goes through Redis: the outage is felt.
    env.extend(vars(&[
        ("CACHE_KEY_PREFIX", &prefix),
        ("REDIS_TIMEOUT_MS", "50"),
        ("CACHE_LOCAL_MAX_BYTES", "0"),
    ]));
    let cache = spawn_cache(env).await;

    const TOTAL: usize = 3000;
    let started = Instant::now();
    let load = Load::start(&cache, 8, TOTAL, |n| {
        format!("/air_quality?limit={}", 1 + n % 20)
    });
    load.until_sent(TOTAL / 3).await;
    redis.stop();
    load.until_sent(2 * TOTAL / 3).await;
    redis.start_again();
    let (failed, failures) = load.finish().await;
    println!(
        "redis killed under load: {TOTAL} requests, {failed} failed, {:?}",
        started.elapsed()
    );
    assert_eq!(
        failed, 0,
        "{}: {failures:?}",
        "requests failed because of Redis"
    );
    let opened = cache
        .metric(
            "api_cache_redis_breaker_transitions_total",
            &[("to", "open")],
        )
        .await;
    assert!(opened >= 1.0, "the breaker never opened");
    assert!(
        cache
            .metrics()
            .await
            .contains("api_cache_redis_breaker_state")
    );

    // Hits come from Redis again: a key stored now is a hit for a replica that
    // never saw it (no local copy).
    let probes = AtomicUsize::new(0);
    let resumed = eventually(Duration::from_secs(15), || async {
        let key = format!(
            "/air_quality?limit={}",
            100 + probes.fetch_add(1, Ordering::SeqCst) % 1000
        );
        cache.get(&key).await.bytes().await.unwrap();
        let mut env = cache_env_for(redis.port(), &rest);
        env.extend(vars(&[("CACHE_KEY_PREFIX", &prefix)]));
        let fresh = spawn_cache(env).await;
        let response = fresh.get(&key).await;
        header(&response, "x-cache") == "HIT"
    })
    .await;
    assert!(resumed, "hits did not resume after Redis came back");
}

#[tokio::test]
async fn a_crashed_lock_holder_blocks_no_longer_than_its_lock() {
    let origin = TestOrigin::start(|_| Reply::ok("x").header("cache-control", "max-age=60")).await;
    let prefix = unique_prefix();
    // The coalescing wait is long: only the lock's expiry can release the waiter soon.
    let cache = cache_for_origin(
        &origin,
        RedisServer::shared().port(),
        &[
            ("CACHE_KEY_PREFIX", &prefix),
            ("CACHE_COALESCE_WAIT_MS", "60000"),
        ],
    )
    .await;
    let key = api_cache::redis_key(&prefix, "/locked").unwrap();
    let mut redis = RedisServer::shared().client().await;
    let _: () = redis::cmd("SET")
        .arg(format!("{key}:lock"))
        .arg("a-replica-that-crashed")
        .arg("PX")
        .arg(1500)
        .query_async(&mut redis)
        .await
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), cache.get("/locked"))
        .await
        .expect("still blocked long after the lock expired");
    assert_eq!(response.status(), 200);
    assert_eq!(origin.count("/locked"), 1);
}

#[tokio::test]
async fn a_waiter_that_times_out_goes_alone_and_does_not_store() {
    let origin = TestOrigin::start(|_| {
        Reply::ok("slow")
            .header("cache-control", "max-age=60")
            .delayed(Duration::from_millis(800))
    })
    .await;
    let cache = cache_for_origin(
        &origin,
        RedisServer::shared().port(),
        &[("CACHE_COALESCE_WAIT_MS", "100")],
    )
    .await;
    let responses = join_all((0..2).map(|_| cache.get("/slow"))).await;
    let statuses: Vec<String> = responses
        .iter()
        .map(|r| header(r, "cache-status"))
        .collect();
    assert!(responses.iter().all(|r| r.status() == 200));
    assert_eq!(origin.count("/slow"), 2);
    assert_eq!(
        statuses.iter().filter(|s| s.contains("; stored")).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| s.ends_with("detail=concurrent-fetch"))
            .count(),
        1,
        "{statuses:?}"
    );
}

#[tokio::test]
async fn redis_over_tls_with_a_password_works() {
    let redis = RedisServer::start_tls("tls-secret");
    let origin =
        TestOrigin::start(|_| Reply::ok("over tls").header("cache-control", "max-age=60")).await;
    let ca = redis.tls_ca().unwrap().to_string_lossy().into_owned();
    let settings = [
        ("REDIS_TLS", "true"),
        ("REDIS_TLS_CA_FILE", ca.as_str()),
        ("REDIS_PASSWORD", "tls-secret"),
    ];
    let first = cache_for_origin(&origin, redis.port(), &settings).await;
    let response = first.get("/t").await;
    assert_eq!(header(&response, "x-cache"), "MISS");
    assert!(
        header(&response, "cache-status").contains("stored"),
        "{}",
        header(&response, "cache-status")
    );
    // Another replica, with no local copy, finds it in Redis.
    let ready: Value = first.admin("/readyz").await.json().await.unwrap();
    assert_eq!(ready["redis"], "up", "the TLS connection works");
    let mut shared = settings.to_vec();
    shared.push(("CACHE_KEY_PREFIX", first.key_prefix()));
    let second = cache_for_origin(&origin, redis.port(), &shared).await;
    let hit = eventually(Duration::from_secs(5), || async {
        header(&second.get("/t").await, "x-cache") == "HIT"
    })
    .await;
    assert!(hit, "the entry did not reach Redis over TLS");
    assert_eq!(origin.count("/t"), 1);
}

async fn purge(cache: &TestCache, token: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = cache
        .client()
        .post(cache.admin_url("/_cache/purge"))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn x_cache(cache: &TestCache, path: &str) -> String {
    let response = cache.get(path).await;
    let value = header(&response, "x-cache");
    response.bytes().await.unwrap();
    value
}

#[tokio::test]
async fn the_purge_api_needs_its_token_and_is_off_without_one() {
    let off = Stack::spawn(&[]).await;
    assert_eq!(
        purge(&off.cache, Some("x"), json!({"url": "/air_quality"}))
            .await
            .status(),
        404
    );
    let on = Stack::spawn(&[("CACHE_PURGE_TOKEN", "purge-secret")]).await;
    let response = purge(&on.cache, None, json!({"url": "/air_quality"})).await;
    assert_eq!(response.status(), 401);
    assert!(header(&response, "www-authenticate").starts_with("Bearer"));
    assert_eq!(
        purge(&on.cache, Some("wrong"), json!({"url": "/air_quality"}))
            .await
            .status(),
        401
    );
    assert_eq!(
        purge(
            &on.cache,
            Some("purge-secret"),
            json!({"url": "/x", "prefix": "/"})
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        purge(
            &on.cache,
            Some("purge-secret"),
            json!({"url": "/air_quality"})
        )
        .await
        .status(),
        200
    );
}

#[tokio::test]
async fn a_soft_purge_makes_entries_revalidate_yet_they_still_cover_an_origin_failure() {
    let mut stack = Stack::spawn(&[("CACHE_PURGE_TOKEN", "t")]).await;
    x_cache(&stack.cache, "/air_quality?limit=2").await;
    let response = purge(
        &stack.cache,
        Some("t"),
        json!({"url": "/air_quality?limit=2", "soft": true}),
    )
    .await;
    assert_eq!(response.json::<Value>().await.unwrap()["soft"], true);
    let response = stack.cache.get("/air_quality?limit=2").await;
    let status = header(&response, "cache-status");
    assert!(
        status.starts_with("api-cache; fwd=stale; fwd-status=304"),
        "{status}"
    );

    purge(
        &stack.cache,
        Some("t"),
        json!({"url": "/air_quality?limit=2", "soft": true}),
    )
    .await;
    stack.rest.stop().await;
    let response = stack.cache.get("/air_quality?limit=2").await;
    assert_eq!(
        response.status(),
        200,
        "a soft-purged entry still covers the origin's failure"
    );
    assert!(header(&response, "cache-status").ends_with("detail=stale-if-error"));
}
