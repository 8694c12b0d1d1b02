//! api-cache in front of api-rest, with real Redis.

use std::time::Duration;

use futures_util::future::join_all;
use integration_tests::apps::{Stack, cache_env, cache_env_for, spawn_cache, spawn_rest, vars};
use integration_tests::process::free_port;
use integration_tests::{PostgresServer, RedisServer, eventually};
use redis::AsyncCommands;
use serde_json::Value;

fn x_cache(response: &reqwest::Response) -> String {
    response.headers()["x-cache"].to_str().unwrap().to_owned()
}

async fn get(stack: &Stack, path: &str) -> (String, reqwest::header::HeaderMap, bytes::Bytes) {
    let response = stack.cache.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    let cache = x_cache(&response);
    let headers = response.headers().clone();
    (cache, headers, response.bytes().await.unwrap())
}

#[tokio::test]
async fn the_original_scenario_miss_then_hit_then_miss_after_the_ttl() {
    // api-rest declares the freshness (RESPONSE_MAX_AGE_SECONDS): 3 s here, a
    // margin for the first fetch (its time counts in the entry's age).
    let stack = Stack::spawn_with(&[("RESPONSE_MAX_AGE_SECONDS", "3")], &[]).await;

    let (first, headers, body) = get(&stack, "/air_quality").await;
    assert_eq!(first, "MISS");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(stack.backend_requests().await, 1.0);

    let (second, headers, cached) = get(&stack, "/air_quality").await;
    assert_eq!(second, "HIT");
    assert_eq!(cached, body, "a hit returns the identical body");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers["age"].to_str().unwrap().parse::<u64>().unwrap() <= 2);
    assert_eq!(
        stack.backend_requests().await,
        1.0,
        "a hit does not reach api-rest"
    );
    let rows: Vec<Value> = serde_json::from_slice(&cached).unwrap();
    assert!(rows.len() > 8000);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    let (third, headers, again) = get(&stack, "/air_quality").await;
    assert_eq!(third, "MISS", "the entry expired after its max-age");
    assert_eq!(stack.backend_requests().await, 2.0);
    // Nothing changed in the data: api-rest answered 304 and sent no body.
    let status = headers["cache-status"].to_str().unwrap();
    assert!(
        status.starts_with("api-cache; fwd=stale; fwd-status=304; stored"),
        "{status}"
    );
    assert_eq!(again, body);
    assert_eq!(
        stack
            .rest
            .metric(
                "http_requests_total",
                &[("route", "/air_quality"), ("status", "304")]
            )
            .await,
        1.0
    );
}

#[tokio::test]
async fn entries_are_stored_under_a_prefixed_stable_digest_with_the_ttl() {
    let stack = Stack::spawn(&[
        ("CACHE_KEY_PREFIX", "ttl-check"),
        ("CACHE_GRACE_SECONDS", "0"),
    ])
    .await;
    // The format by parameter: one entry, no variants by Accept.
    get(&stack, "/air_quality?limit=3&format=json").await;
    let mut redis = RedisServer::shared().client().await;
    let keys = integration_tests::redis::entry_keys(&mut redis, "ttl-check", 1).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    // The digest in braces: a Redis Cluster hash tag.
    let digest = keys[0]
        .strip_prefix("ttl-check:{")
        .and_then(|rest| rest.strip_suffix('}'))
        .unwrap();
    assert_eq!(digest.len(), 32);
    assert!(digest.chars().all(|c| c.is_ascii_hexdigit()));
    let ttl: i64 = redis.ttl(&keys[0]).await.unwrap();
    assert!(
        (1..=30).contains(&ttl),
        "TTL {ttl}: api-rest's max-age=30, no grace"
    );
}

#[tokio::test]
async fn reordered_query_parameters_share_one_entry() {
    let stack = Stack::spawn(&[]).await;
    let (first, _, a) = get(&stack, "/air_quality?limit=5&order=desc").await;
    let (second, _, b) = get(&stack, "/air_quality?order=desc&limit=5").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(a, b);
    let (other, _, _) = get(&stack, "/air_quality?order=desc&limit=6").await;
    assert_eq!(other, "MISS");
}

#[tokio::test]
async fn a_hundred_concurrent_misses_make_one_backend_request() {
    let stack = Stack::spawn(&[]).await;
    let requests = (0..100).map(|_| stack.cache.get("/air_quality"));
    let responses = join_all(requests).await;
    let mut bodies = Vec::new();
    for response in responses {
        assert_eq!(response.status(), 200);
        assert_ne!(x_cache(&response), "BYPASS");
        bodies.push(response.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(stack.backend_requests().await, 1.0);
    let collapsed = stack
        .cache
        .metric("api_cache_requests_total", &[("outcome", "collapsed")])
        .await;
    let hits = stack
        .cache
        .metric("api_cache_requests_total", &[("outcome", "hit")])
        .await;
    assert_eq!(collapsed + hits, 99.0);
}

#[tokio::test]
async fn errors_are_passed_through_and_never_stored() {
    let stack = Stack::spawn(&[]).await;
    for _ in 0..2 {
        let response = stack.cache.get("/air_quality?limit=0").await;
        assert_eq!(response.status(), 400);
        assert_eq!(x_cache(&response), "MISS");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["invalid_params"][0]["name"], "limit");
    }
    assert_eq!(stack.backend_requests().await, 2.0);
    let response = stack.cache.get("/no/such/path").await;
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_body_over_the_size_limit_is_passed_through_but_not_stored() {
    let stack = Stack::spawn(&[
        ("CACHE_MAX_BODY_BYTES", "10000"),
        ("CACHE_KEY_PREFIX", "too-large"),
    ])
    .await;
    for _ in 0..2 {
        let (cache, _, body) = get(&stack, "/air_quality").await;
        assert_eq!(cache, "MISS");
        let rows: Vec<Value> = serde_json::from_slice(&body).expect("the whole body arrives");
        assert!(rows.len() > 8000);
    }
    assert_eq!(stack.backend_requests().await, 2.0);
    let (small, _, _) = get(&stack, "/air_quality?limit=2&format=json").await;
    let (again, _, _) = get(&stack, "/air_quality?limit=2&format=json").await;
    assert_eq!((small.as_str(), again.as_str()), ("MISS", "HIT"));
    let mut redis = RedisServer::shared().client().await;
    let keys = integration_tests::redis::entry_keys(&mut redis, "too-large", 1).await;
    assert_eq!(keys.len(), 1, "only the small response is stored: {keys:?}");
}

#[tokio::test]
async fn head_is_answered_from_the_get_entry() {
    let stack = Stack::spawn(&[]).await;
    let (_, _, body) = get(&stack, "/air_quality?limit=10").await;
    let response = stack
        .cache
        .client()
        .head(stack.cache.url("/air_quality?limit=10"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(x_cache(&response), "HIT");
    assert_eq!(
        response.headers()["content-length"],
        body.len().to_string().as_str()
    );
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(stack.backend_requests().await, 1.0);
}

#[tokio::test]
async fn other_methods_reach_api_rest_which_refuses_them_with_allow() {
    let stack = Stack::spawn(&[]).await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = stack
            .cache
            .client()
            .request(method.clone(), stack.cache.url("/air_quality"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(x_cache(&response), "BYPASS");
        assert_eq!(
            response.headers()["cache-status"],
            "api-cache; fwd=method; fwd-status=405"
        );
    }
    let refused = stack
        .rest
        .metric(
            "http_requests_total",
            &[("route", "/air_quality"), ("status", "405")],
        )
        .await;
    assert_eq!(refused, 3.0, "api-rest itself answers 405");
}

#[tokio::test]
async fn its_own_endpoints_are_on_the_admin_port_and_not_proxied() {
    let stack = Stack::spawn(&[]).await;
    let live = stack.cache.get("/healthz").await;
    assert_eq!(
        live.status(),
        200,
        "liveness stays on the public port, for probes"
    );
    assert!(live.headers().get("x-cache").is_none());
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = stack.cache.admin(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().get("x-cache").is_none(), "{path}");
    }
    let ready: Value = stack.cache.admin("/readyz").await.json().await.unwrap();
    assert_eq!(ready["redis"], "up");
    // Neither api-cache's nor api-rest's operators' endpoints on the public port.
    for path in ["/readyz", "/metrics", "/changes", "/_cache/purge"] {
        let response = stack.cache.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    // (api-rest's /metrics is left out: the test itself scrapes it.)
    for route in ["/", "/air_quality", "/healthz", "/readyz"] {
        let reached = stack
            .rest
            .metric("http_requests_total", &[("route", route)])
            .await;
        assert_eq!(reached, 0.0, "{route} reached api-rest");
    }
}

#[tokio::test]
async fn with_redis_stopped_requests_bypass_it_hot_keys_stay_local_and_caching_resumes() {
    let mut redis = RedisServer::start();
    let db = PostgresServer::shared().create_database();
    let rest = spawn_rest(db.rest_env()).await;
    let prefix = integration_tests::apps::unique_prefix();
    let mut env = cache_env_for(redis.port(), &rest);
    env.extend(vars(&[
        ("REDIS_TIMEOUT_MS", "200"),
        ("CACHE_KEY_PREFIX", &prefix),
    ]));
    let cache = spawn_cache(env).await;

    let response = cache.get("/air_quality?limit=5").await;
    assert_eq!(x_cache(&response), "MISS");

    redis.stop();
    // A key this replica holds keeps being served from its local tier...
    let response = cache.get("/air_quality?limit=5").await;
    assert_eq!(
        (response.status().as_u16(), x_cache(&response).as_str()),
        (200, "HIT")
    );
    // ...and any other goes to api-rest: never a 5xx because of Redis.
    for limit in 6..9 {
        let response = cache.get(&format!("/air_quality?limit={limit}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(x_cache(&response), "BYPASS");
        let status = response.headers()["cache-status"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(status.ends_with("detail=storage-unavailable"), "{status}");
        let rows: Vec<Value> = response.json().await.unwrap();
        assert_eq!(rows.len(), limit);
    }
    let ready: Value = cache.admin("/readyz").await.json().await.unwrap();
    assert_eq!(ready["redis"], "down");

    redis.start_again();
    // Caching in Redis resumes by itself: new keys reach Redis again.
    let next = std::sync::atomic::AtomicUsize::new(20);
    let stored_again = eventually(Duration::from_secs(15), || async {
        let limit = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cache.get(&format!("/air_quality?limit={limit}")).await;
        let mut connection = redis.client().await;
        !integration_tests::redis::entry_keys(&mut connection, &prefix, 1)
            .await
            .is_empty()
    })
    .await;
    assert!(
        stored_again,
        "caching in Redis never resumed after Redis came back"
    );
}

#[tokio::test]
async fn redis_passwords_are_sent_and_a_wrong_one_only_bypasses() {
    let redis = RedisServer::start_with_password("s3cret-redis");
    let db = PostgresServer::shared().create_database();
    let rest = spawn_rest(db.rest_env()).await;

    let mut env = cache_env_for(redis.port(), &rest);
    env.extend(vars(&[("REDIS_PASSWORD", "s3cret-redis")]));
    let cache = spawn_cache(env).await;
    assert_eq!(x_cache(&cache.get("/air_quality?limit=1").await), "MISS");
    assert_eq!(x_cache(&cache.get("/air_quality?limit=1").await), "HIT");

    let mut env = cache_env_for(redis.port(), &rest);
    env.extend(vars(&[("REDIS_PASSWORD", "wrong")]));
    let wrong = spawn_cache(env).await;
    let response = wrong.get("/air_quality?limit=1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(x_cache(&response), "BYPASS");
}

#[tokio::test]
async fn api_rest_down_is_a_502_problem() {
    let env = cache_env(RedisServer::shared().port(), free_port());
    let cache = spawn_cache(env).await;
    let response = cache.get("/air_quality").await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["status"], 502);
}

#[tokio::test]
async fn api_rest_too_slow_is_a_504_problem() {
    // An origin that accepts connections and never answers.
    let silent = integration_tests::origin::Silent::start().await;
    let port = silent.port;
    let mut env = cache_env(RedisServer::shared().port(), port);
    env.extend(vars(&[("BACKEND_TIMEOUT_MS", "300")]));
    let cache = spawn_cache(env).await;
    let response = cache.get("/air_quality").await;
    assert_eq!(response.status(), 504);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_a_bypass_not_an_error() {
    // Accepts connections and says nothing: a hung or overloaded Redis.
    let silent = integration_tests::origin::Silent::start().await;
    let port = silent.port;
    let db = PostgresServer::shared().create_database();
    let rest = spawn_rest(db.rest_env()).await;
    let mut env = cache_env_for(port, &rest);
    env.extend(vars(&[("REDIS_TIMEOUT_MS", "100")]));
    let cache = spawn_cache(env).await;
    let response = cache.get("/air_quality?limit=2").await;
    assert_eq!(response.status(), 200);
    assert_eq!(x_cache(&response), "BYPASS");
    // Kept in the local tier meanwhile.
    assert_eq!(x_cache(&cache.get("/air_quality?limit=2").await), "HIT");
    let response = cache.get("/air_quality?limit=3").await;
    assert_eq!(
        (response.status().as_u16(), x_cache(&response).as_str()),
        (200, "BYPASS")
    );
}
