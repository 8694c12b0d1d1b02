//! api-cache as an HTTP cache (RFC 9111, 9211): each rule through real Redis,
//! against a test origin that answers chosen headers and records its requests,
//! or against api-rest itself.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use integration_tests::apps::{Stack, cache_env, spawn_cache, vars};
use integration_tests::origin::{Recorded, Reply, TestOrigin};
use integration_tests::process::free_port;
use integration_tests::{RedisServer, TestCache};
use redis::AsyncCommands;

async fn cache_in_front_of(origin: &TestOrigin, extra: &[(&str, &str)]) -> TestCache {
    let mut env = cache_env(RedisServer::shared().port(), origin.port);
    // The test origin has no change feed.
    env.push(("BACKEND_CHANGES_PATH".into(), String::new()));
    env.extend(vars(extra));
    spawn_cache(env).await
}

/// GETs `path` with extra request headers; returns (status, headers, body).
async fn get(
    cache: &TestCache,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = cache.client().get(cache.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

/// An origin answering `body` with these headers on every GET.
async fn origin_with(response_headers: &'static [(&'static str, &'static str)]) -> TestOrigin {
    TestOrigin::start(move |_| {
        let mut reply = Reply::ok("origin body").header("content-type", "text/plain");
        for (name, value) in response_headers {
            reply = reply.header(name, value);
        }
        reply
    })
    .await
}

#[tokio::test]
async fn no_store_responses_are_not_stored() {
    let origin = origin_with(&[("cache-control", "no-store")]).await;
    let cache = cache_in_front_of(&origin, &[]).await;
    for _ in 0..2 {
        let (status, headers, _) = get(&cache, "/x", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "x-cache"), "MISS");
        assert_eq!(
            header(&headers, "cache-status"),
            "api-cache; fwd=uri-miss; fwd-status=200; detail=no-store"
        );
    }
    assert_eq!(origin.count("/x"), 2);
}

#[tokio::test]
async fn private_responses_are_not_stored() {
    let origin = origin_with(&[("cache-control", "private, max-age=60")]).await;
    let cache = cache_in_front_of(&origin, &[]).await;
    get(&cache, "/x", &[]).await;
    let (_, headers, _) = get(&cache, "/x", &[]).await;
    assert!(header(&headers, "cache-status").ends_with("detail=private"));
    assert_eq!(origin.count("/x"), 2);
}

#[tokio::test]
async fn the_origins_max_age_overrides_the_default_ttl_both_ways() {
    let origin = TestOrigin::start(|request| {
        let max_age = if request.path() == "/short" {
            "max-age=1"
        } else {
            "max-age=60"
        };
        Reply::ok("x").header("cache-control", max_age)
    })
    .await;
    // The default would keep /short 30 s and /long 1 s.
    let long_default = cache_in_front_of(&origin, &[("CACHE_TTL_SECONDS", "30")]).await;
    let short_default = cache_in_front_of(&origin, &[("CACHE_TTL_SECONDS", "1")]).await;
    get(&long_default, "/short", &[]).await;
    get(&short_default, "/long", &[]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, short, _) = get(&long_default, "/short", &[]).await;
    let (_, long, _) = get(&short_default, "/long", &[]).await;
    assert_eq!(
        header(&short, "x-cache"),
        "MISS",
        "max-age=1 beats CACHE_TTL_SECONDS=30"
    );
    assert_eq!(
        header(&long, "x-cache"),
        "HIT",
        "max-age=60 beats CACHE_TTL_SECONDS=1"
    );
    assert_eq!((origin.count("/short"), origin.count("/long")), (2, 1));
}

#[tokio::test]
async fn the_default_ttl_applies_when_the_origin_says_nothing_and_zero_means_none() {
    let origin = origin_with(&[]).await;
    let default = cache_in_front_of(&origin, &[("CACHE_TTL_SECONDS", "30")]).await;
    get(&default, "/x", &[]).await;
    let (_, headers, _) = get(&default, "/x", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
    let strict = cache_in_front_of(&origin, &[("CACHE_TTL_SECONDS", "0")]).await;
    get(&strict, "/y", &[]).await;
    let (_, headers, _) = get(&strict, "/y", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "MISS");
    assert!(header(&headers, "cache-status").ends_with("detail=no-freshness"));
}

#[tokio::test]
async fn s_maxage_wins_over_max_age_in_a_shared_cache() {
    let origin = origin_with(&[("cache-control", "max-age=1, s-maxage=60")]).await;
    let cache = cache_in_front_of(&origin, &[]).await;
    get(&cache, "/x", &[]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, headers, _) = get(&cache, "/x", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
    assert_eq!(origin.count("/x"), 1);
}

#[tokio::test]
async fn responses_that_set_cookies_are_not_stored() {
    let origin = origin_with(&[
        ("cache-control", "max-age=60"),
        ("set-cookie", "session=abc"),
    ])
    .await;
    let cache = cache_in_front_of(&origin, &[]).await;
    let (_, headers, _) = get(&cache, "/x", &[]).await;
    assert_eq!(
        header(&headers, "set-cookie"),
        "session=abc",
        "passed through"
    );
    let (_, headers, _) = get(&cache, "/x", &[]).await;
    assert!(header(&headers, "cache-status").ends_with("detail=set-cookie"));
    assert_eq!(origin.count("/x"), 2);
}

#[tokio::test]
async fn server_errors_and_vary_star_are_never_stored() {
    let origin = TestOrigin::start(|request| match request.path() {
        "/error" => Reply::status(503).header("cache-control", "max-age=60"),
        _ => Reply::ok("x")
            .header("cache-control", "max-age=60")
            .header("vary", "*"),
    })
    .await;
    let cache = cache_in_front_of(&origin, &[]).await;
    for path in ["/error", "/error", "/any", "/any"] {
        get(&cache, path, &[]).await;
    }
    assert_eq!((origin.count("/error"), origin.count("/any")), (2, 2));
}

#[tokio::test]
async fn requests_with_credentials_go_to_the_origin_unless_the_response_is_public() {
    let origin = TestOrigin::start(|request| {
        let cc = if request.path() == "/shared" {
            "public, max-age=60"
        } else {
            "max-age=60"
        };
        Reply::ok(format!(
            "for {}",
            request.header("authorization").unwrap_or("nobody")
        ))
        .header("cache-control", cc)
    })
    .await;
    let cache = cache_in_front_of(&origin, &[]).await;
    for who in ["Bearer alice", "Bearer bob"] {
        let (_, _, body) = get(&cache, "/mine", &[("authorization", who)]).await;
        assert_eq!(String::from_utf8(body).unwrap(), format!("for {who}"));
    }
    assert_eq!(
        origin.count("/mine"),
        2,
        "each credentialed request reached the origin"
    );
    assert!(
        origin
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_some()),
        "credentials passed untouched"
    );
    // A response stored for an anonymous request is not served to a credentialed one.
    get(&cache, "/mine", &[]).await;
    let (_, headers, _) = get(&cache, "/mine", &[("cookie", "session=1")]).await;
    assert_eq!(header(&headers, "x-cache"), "MISS");
    assert_eq!(origin.count("/mine"), 4);
    // An explicitly public response may be stored and shared.
    get(&cache, "/shared", &[("authorization", "Bearer alice")]).await;
    let (_, headers, _) = get(&cache, "/shared", &[("authorization", "Bearer bob")]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
    assert_eq!(origin.count("/shared"), 1);
}

#[tokio::test]
async fn each_vary_variant_is_stored_under_its_own_key_and_served_to_its_requests() {
    let origin = TestOrigin::start(|request| {
        Reply::ok(format!(
            "hello {}",
            request.header("accept-language").unwrap_or("none")
        ))
        .header("cache-control", "max-age=60")
        .header("vary", "Accept-Language")
    })
    .await;
    let prefix = integration_tests::apps::unique_prefix();
    let cache = cache_in_front_of(&origin, &[("CACHE_KEY_PREFIX", &prefix)]).await;
    let (_, fr, body) = get(&cache, "/greet", &[("accept-language", "fr")]).await;
    assert_eq!(
        (header(&fr, "x-cache"), body.as_slice()),
        ("MISS", &b"hello fr"[..])
    );
    let (_, de, body) = get(&cache, "/greet", &[("accept-language", "de")]).await;
    assert_eq!(body, b"hello de");
    assert!(
        header(&de, "cache-status").contains("fwd=vary-miss"),
        "{}",
        header(&de, "cache-status")
    );
    for lang in ["fr", "de"] {
        let (_, headers, body) = get(&cache, "/greet", &[("accept-language", lang)]).await;
        assert_eq!(header(&headers, "x-cache"), "HIT", "{lang}");
        assert_eq!(body, format!("hello {lang}").into_bytes());
        assert!(header(&headers, "vary").contains("Accept-Language"));
    }
    let (_, none, body) = get(&cache, "/greet", &[]).await;
    assert_eq!(
        (header(&none, "x-cache"), body.as_slice()),
        ("MISS", &b"hello none"[..])
    );
    assert_eq!(origin.count("/greet"), 3);
    // Three variants and the Vary index; plus the variant set and the purge
    // tags: every key has a TTL.
    let mut redis = RedisServer::shared().client().await;
    let entries = integration_tests::redis::entry_keys(&mut redis, &prefix, 4).await;
    assert_eq!(entries.len(), 4, "{entries:?}");
    let keys: Vec<String> = redis.keys(format!("{prefix}:*")).await.unwrap();
    for key in keys {
        let ttl: i64 = redis.ttl(&key).await.unwrap();
        assert!(ttl > 0, "{key} has no TTL");
    }
}

#[tokio::test]
async fn head_is_answered_from_the_get_entry_with_the_representation_length() {
    let origin = TestOrigin::start(|_| {
        Reply::ok("x".repeat(5000))
            .header("content-type", "text/plain")
            .header("cache-control", "max-age=60")
    })
    .await;
    let cache = cache_in_front_of(&origin, &[]).await;
    get(&cache, "/x", &[]).await;
    for (accept, length) in [("identity", 5000), ("gzip", 0)] {
        let response = cache
            .client()
            .head(cache.url("/x"))
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["x-cache"], "HIT");
        let sent: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        if length > 0 {
            assert_eq!(sent, length);
        } else {
            assert!(sent < 200, "the gzip representation's length, got {sent}");
        }
        assert!(response.bytes().await.unwrap().is_empty());
    }
    assert_eq!(origin.count("/x"), 1);
}

#[tokio::test]
async fn a_conditional_request_gets_304_from_a_fresh_entry() {
    let origin = origin_with(&[
        ("cache-control", "max-age=60"),
        ("etag", "\"v1\""),
        ("last-modified", "Sat, 01 Oct 2016 00:00:00 GMT"),
    ])
    .await;
    let cache = cache_in_front_of(&origin, &[]).await;
    let (_, first, _) = get(&cache, "/x", &[]).await;
    assert_eq!(header(&first, "etag"), "\"v1\"");
    let (status, headers, body) = get(&cache, "/x", &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    assert_eq!(
        (header(&headers, "x-cache"), header(&headers, "etag")),
        ("HIT", "\"v1\"")
    );
    assert_eq!(header(&headers, "cache-control"), "max-age=60");
    let (status, _, _) = get(
        &cache,
        "/x",
        &[("if-modified-since", "Sat, 01 Oct 2016 00:00:00 GMT")],
    )
    .await;
    assert_eq!(status, 304);
    let (status, _, _) = get(&cache, "/x", &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(status, 200);
    assert_eq!(origin.count("/x"), 1, "all answered by the cache");
}

/// An origin with a validator that answers 304 to a matching conditional request.
async fn revalidating_origin(body_size: usize, max_age: &'static str) -> TestOrigin {
    TestOrigin::start(move |request: &Recorded| {
        if request.header("if-none-match") == Some("\"v1\"") {
            return Reply::status(304)
                .header("etag", "\"v1\"")
                .header("cache-control", max_age);
        }
        Reply::ok("b".repeat(body_size))
            .header("content-type", "text/plain")
            .header("cache-control", max_age)
            .header("etag", "\"v1\"")
    })
    .await
}

#[tokio::test]
async fn a_stale_entry_is_revalidated_and_a_304_transfers_no_body() {
    let origin = revalidating_origin(5000, "max-age=2").await;
    let cache = cache_in_front_of(&origin, &[]).await;
    let (_, _, first) = get(&cache, "/r", &[]).await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let (status, headers, again) = get(&cache, "/r", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "the stored body, refreshed");
    assert_eq!(header(&headers, "x-cache"), "MISS");
    assert!(
        header(&headers, "cache-status")
            .starts_with("api-cache; fwd=stale; fwd-status=304; stored; ttl="),
        "{}",
        header(&headers, "cache-status")
    );
    let requests = origin.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].header("if-none-match"),
        Some("\"v1\""),
        "revalidated with the stored validator"
    );
    assert_eq!(
        origin.body_bytes_sent("/r"),
        5000,
        "the 304 carried no body"
    );
    let (_, headers, _) = get(&cache, "/r", &[]).await;
    assert_eq!(
        header(&headers, "x-cache"),
        "HIT",
        "the refreshed entry is fresh again"
    );
    assert_eq!(
        cache
            .metric("api_cache_requests_total", &[("outcome", "revalidated")])
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_clients_no_cache_or_max_age_zero_makes_the_cache_revalidate() {
    let origin = revalidating_origin(10, "max-age=60").await;
    let cache = cache_in_front_of(&origin, &[]).await;
    get(&cache, "/r", &[]).await;
    for directive in ["no-cache", "max-age=0"] {
        let (status, headers, _) = get(&cache, "/r", &[("cache-control", directive)]).await;
        assert_eq!(status, 200);
        assert!(
            header(&headers, "cache-status").contains("fwd=request; fwd-status=304"),
            "{directive}"
        );
    }
    let (_, headers, _) = get(&cache, "/r", &[("pragma", "no-cache")]).await;
    assert!(header(&headers, "cache-status").contains("fwd=request"));
    assert_eq!(origin.count("/r"), 4);
    let (status, _, _) = get(&cache, "/absent", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(status, 504);
}

#[tokio::test]
async fn a_successful_post_invalidates_the_url_and_its_location() {
    let version = Arc::new(AtomicUsize::new(1));
    let seen = version.clone();
    let origin = TestOrigin::start(move |request| match request.method.as_str() {
        "POST" if request.path() == "/fail" => Reply::status(500),
        "POST" => {
            seen.fetch_add(1, Ordering::SeqCst);
            Reply::status(201).header("location", "/items/7")
        }
        _ => Reply::ok(format!("v{}", seen.load(Ordering::SeqCst)))
            .header("cache-control", "max-age=60"),
    })
    .await;
    let cache = cache_in_front_of(&origin, &[]).await;
    for path in ["/items", "/items/7", "/fail"] {
        get(&cache, path, &[]).await;
        let (_, headers, _) = get(&cache, path, &[]).await;
        assert_eq!(header(&headers, "x-cache"), "HIT");
    }
    let response = cache
        .client()
        .post(cache.url("/items"))
        .body("{\"x\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(
        response.headers()["cache-status"],
        "api-cache; fwd=method; fwd-status=201"
    );
    let post = origin
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(
        post.body,
        "{\"x\":1}".as_bytes(),
        "the body reached the origin"
    );
    for path in ["/items", "/items/7"] {
        let (_, headers, body) = get(&cache, path, &[]).await;
        assert_eq!(
            header(&headers, "x-cache"),
            "MISS",
            "{path} was invalidated"
        );
        assert_eq!(body, b"v2");
    }
    // A failed POST invalidates nothing.
    cache
        .client()
        .post(cache.url("/fail"))
        .send()
        .await
        .unwrap();
    let (_, headers, _) = get(&cache, "/fail", &[]).await;
    assert_eq!(header(&headers, "x-cache"), "HIT");
}

#[tokio::test]
async fn age_counts_the_origins_age_and_the_time_stored() {
    let origin = origin_with(&[("cache-control", "max-age=100"), ("age", "10")]).await;
    let cache = cache_in_front_of(&origin, &[]).await;
    let (_, first, _) = get(&cache, "/x", &[]).await;
    let first_age: u64 = header(&first, "age").parse().unwrap();
    assert!(first_age >= 10, "the origin's Age counts: {first_age}");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, later, _) = get(&cache, "/x", &[]).await;
    let later_age: u64 = header(&later, "age").parse().unwrap();
    assert!(
        later_age >= first_age + 2,
        "Age {later_age} grows with the time stored"
    );
    // Age and the remaining freshness add up to the origin's max-age.
    let ttl: i64 = header(&later, "cache-status")
        .rsplit("ttl=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (ttl + later_age as i64 - 100).abs() <= 1,
        "ttl {ttl} + age {later_age}"
    );
}

#[tokio::test]
async fn cache_status_and_x_cache_tell_hit_miss_and_bypass() {
    let origin = origin_with(&[("cache-control", "max-age=60")]).await;
    let cache = cache_in_front_of(&origin, &[]).await;
    let (_, miss, _) = get(&cache, "/x", &[]).await;
    let status = header(&miss, "cache-status");
    let (fixed, ttl) = status.rsplit_once("; ttl=").unwrap();
    assert_eq!(fixed, "api-cache; fwd=uri-miss; fwd-status=200; stored");
    assert!((50..=60).contains(&ttl.parse::<i64>().unwrap()), "{status}");
    assert_eq!(header(&miss, "x-cache"), "MISS");
    let (_, hit, _) = get(&cache, "/x", &[]).await;
    assert!(
        header(&hit, "cache-status").starts_with("api-cache; hit; ttl="),
        "{}",
        header(&hit, "cache-status")
    );
    assert_eq!(header(&hit, "x-cache"), "HIT");
    assert!(header(&hit, "via").contains("1.1 api-cache"));

    let mut env = cache_env(free_port(), origin.port);
    env.extend(vars(&[
        ("REDIS_TIMEOUT_MS", "100"),
        ("BACKEND_CHANGES_PATH", ""),
    ]));
    let without_redis = spawn_cache(env).await;
    let (status, bypass, _) = get(&without_redis, "/x", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&bypass, "cache-status"),
        "api-cache; fwd=miss; fwd-status=200; detail=storage-unavailable"
    );
    assert_eq!(header(&bypass, "x-cache"), "BYPASS");
}

#[tokio::test]
async fn unknown_headers_pass_both_ways_and_hop_by_hop_ones_do_not() {
    let origin = TestOrigin::start(|_| {
        Reply::ok("x")
            .header("cache-control", "max-age=60")
            .header("x-origin-custom", "kept")
            .header("connection", "x-origin-hop")
            .header("x-origin-hop", "dropped")
    })
    .await;
    let cache = cache_in_front_of(&origin, &[]).await;
    let (_, headers, _) = get(
        &cache,
        "/x",
        &[
            ("x-client-custom", "kept"),
            ("connection", "x-client-hop"),
            ("x-client-hop", "dropped"),
        ],
    )
    .await;
    assert_eq!(header(&headers, "x-origin-custom"), "kept");
    assert_eq!(header(&headers, "x-origin-hop"), "");
    let seen = &origin.requests()[0];
    assert_eq!(seen.header("x-client-custom"), Some("kept"));
    assert_eq!(seen.header("x-client-hop"), None);
    assert!(seen.header("via").unwrap().contains("1.1 api-cache"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    let (_, hit, _) = get(&cache, "/x", &[]).await;
    assert_eq!(
        header(&hit, "x-origin-custom"),
        "kept",
        "stored with the entry"
    );
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn gzip_and_identity_clients_get_the_same_decoded_bytes() {
    let stack = Stack::spawn(&[]).await;
    let (_, identity, plain) = get(&stack.cache, "/air_quality", &[]).await;
    assert_eq!(header(&identity, "content-encoding"), "");
    for _ in 0..2 {
        let (_, gzip, packed) = get(
            &stack.cache,
            "/air_quality",
            &[("accept-encoding", "gzip, br")],
        )
        .await;
        assert_eq!(header(&gzip, "content-encoding"), "gzip");
        assert!(
            packed.len() * 4 < plain.len(),
            "{} compressed vs {} plain",
            packed.len(),
            plain.len()
        );
        assert_eq!(gunzip(&packed), plain);
        assert!(
            header(&gzip, "etag").starts_with("W/\""),
            "a transformed representation has a weak ETag"
        );
        assert!(header(&gzip, "vary").contains("Accept-Encoding"));
    }
    let (_, identity_hit, again) = get(
        &stack.cache,
        "/air_quality",
        &[("accept-encoding", "identity")],
    )
    .await;
    assert_eq!(header(&identity_hit, "x-cache"), "HIT");
    assert_eq!(again, plain);
    assert!(
        header(&identity_hit, "etag").starts_with('"'),
        "the identity form keeps the strong ETag"
    );
    assert_eq!(
        stack.backend_requests().await,
        1.0,
        "stored once, served both ways"
    );
}
