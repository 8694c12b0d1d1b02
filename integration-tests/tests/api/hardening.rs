//! The public front against hostile clients, through the real executables:
//! one test per case reproduced when it was open (issue 11), and a load of
//! malformed and cache-busting requests that must leave memory and Redis
//! bounded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use integration_tests::RedisServer;
use integration_tests::apps::{cache_env, vars};
use integration_tests::executables::{
    ExecutableStack, RawResponse, Service, raw_exchange, raw_get,
};
use integration_tests::origin::{Reply, TestOrigin};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every key under `prefix` (all keys when empty), by SCAN.
async fn keys(redis: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let pattern = if prefix.is_empty() {
        "*".to_owned()
    } else {
        format!("{prefix}:*")
    };
    let mut cursor = 0u64;
    let mut found = Vec::new();
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .unwrap();
        found.extend(page);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Redis' `used_memory`, in bytes.
async fn redis_used_memory(redis: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

#[tokio::test]
async fn a_path_of_dot_segments_is_the_entry_of_its_normal_form_and_costs_no_memory() {
    let redis = RedisServer::start();
    let stack = ExecutableStack::start(redis.port(), &[]).await;
    let mut connection = redis.client().await;
    let port = stack.cache.port;
    assert_eq!(raw_get(port, "/air_quality?limit=3").await.status, 200);
    let resident_before = stack.cache.resident_kib();
    let redis_before = redis_used_memory(&mut connection).await;

    // 4,000 "/." segments: an 8 KB target, just within HTTP_MAX_URI_BYTES.
    let dotted = format!("{}/air_quality?limit=3", "/.".repeat(4_000));
    let answer = raw_get(port, &dotted).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.header("x-cache"),
        Some("HIT"),
        "the entry of /air_quality?limit=3"
    );
    let climbing = format!("{}/air_quality?limit=4", "/x/..".repeat(1_500));
    let answer = raw_get(port, &climbing).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-cache"), Some("MISS"));
    assert_eq!(
        raw_get(port, "/air_quality?limit=4")
            .await
            .header("x-cache"),
        Some("HIT"),
        "stored under the normal form"
    );
    // 8,000 of them, as reproduced: over the limit.
    let too_long = format!("{}/air_quality?limit=3", "/.".repeat(8_000));
    let answer = raw_get(port, &too_long).await;
    assert_eq!(answer.status, 414);
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );

    let resident_after = stack.cache.resident_kib();
    let redis_after = redis_used_memory(&mut connection).await;
    println!(
        "dot segments: api-cache RSS {:.1} -> {:.1} MiB, Redis used_memory {} -> {} bytes",
        mib(resident_before),
        mib(resident_after),
        redis_before,
        redis_after
    );
    // Was 246 MiB and 14.8 MB for the 16 KB target alone.
    assert!(resident_after < resident_before + 16 * 1024, "RSS grew");
    assert!(redis_after < redis_before + 1024 * 1024, "Redis grew");
    for key in keys(&mut connection, &stack.key_prefix).await {
        assert!(
            key.len() < 400,
            "a key carries the raw path: {} bytes",
            key.len()
        );
    }
}

#[tokio::test]
async fn api_rests_internal_endpoints_are_unreachable_through_the_cache_in_any_spelling() {
    let stack = ExecutableStack::start(RedisServer::shared().port(), &[]).await;
    let mut tried = 0;
    for endpoint in ["metrics", "readyz", "healthz", "changes"] {
        let escaped_first = format!("%{:02X}{}", endpoint.as_bytes()[0], &endpoint[1..]);
        for spelling in [
            format!("/x/../{endpoint}"),
            format!("/./{endpoint}"),
            format!("/%2e/{endpoint}"),
            format!("/x/%2E%2E/{endpoint}"),
            format!("//{endpoint}"),
            format!("/{endpoint}/"),
            format!("/{escaped_first}"),
            format!("/{endpoint}?x=1"),
            format!("/../{endpoint}"),
        ] {
            // A feed would never end: raw_get gives up after 30 s and fails.
            let answer = raw_get(stack.cache.port, &spelling).await;
            let from_cache_itself = answer.status == 200 && answer.header("x-cache").is_none();
            assert!(
                matches!(answer.status, 400 | 404) || from_cache_itself,
                "{spelling}: {} {}",
                answer.status,
                answer.text()
            );
            for leak in ["api_rest_", "# TYPE", "data_version", "event-stream"] {
                assert!(
                    !answer.head.contains(leak) && !answer.text().contains(leak),
                    "{spelling}"
                );
            }
            tried += 1;
        }
    }
    // api-cache's own operators' endpoints are not on the public port either.
    for path in ["/metrics", "/readyz", "/_cache/purge"] {
        assert_eq!(raw_get(stack.cache.port, path).await.status, 404, "{path}");
    }
    println!("{tried} spellings of api-rest's internal endpoints refused");
}

#[tokio::test]
async fn a_date_past_year_9999_in_utc_is_a_400_naming_from() {
    let stack = ExecutableStack::start(RedisServer::shared().port(), &[]).await;
    let answer = raw_get(
        stack.cache.port,
        "/air_quality?from=9999-12-31T23:00:00-05:00",
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    assert_eq!(
        answer.header("content-type"),
        Some("application/problem+json")
    );
    let problem: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(problem["invalid_params"][0]["name"], "from");
    assert_eq!(
        problem["invalid_params"][0]["value"],
        "9999-12-31T23:00:00-05:00"
    );
}

/// Sends `bytes` and waits for the server to close the connection; returns
/// how long that took, or `None` if it was still open after `patience`.
async fn closed_after(port: u16, bytes: &[u8], patience: Duration) -> Option<Duration> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let started = Instant::now();
    let mut sink = Vec::new();
    match tokio::time::timeout(patience, stream.read_to_end(&mut sink)).await {
        Ok(_closed_or_reset) => Some(started.elapsed()),
        Err(_still_open) => None,
    }
}

#[tokio::test]
async fn a_connection_that_never_ends_its_headers_or_idles_is_closed() {
    let stack = ExecutableStack::start(
        RedisServer::shared().port(),
        &[
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "1"),
            ("HTTP_IDLE_TIMEOUT_SECONDS", "1"),
        ],
    )
    .await;
    let patience = Duration::from_secs(20);
    for (name, port) in [
        ("api-cache", stack.cache.port),
        ("api-cache admin", stack.cache.admin_port),
        ("api-rest", stack.rest.port),
        ("api-rest admin", stack.rest.admin_port),
    ] {
        let slow_loris =
            closed_after(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n", patience).await;
        assert!(
            slow_loris.is_some(),
            "{name}: an unfinished head kept the connection open"
        );
        let idle = closed_after(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", patience).await;
        assert!(
            idle.is_some(),
            "{name}: an idle keep-alive connection stayed open"
        );
        println!(
            "{name}: unfinished head closed after {:?}, idle connection after {:?}",
            slow_loris.unwrap(),
            idle.unwrap()
        );
    }
}

#[tokio::test]
async fn past_the_connection_limit_a_client_waits_for_a_free_one() {
    let stack = ExecutableStack::start(
        RedisServer::shared().port(),
        &[("HTTP_MAX_CONNECTIONS", "4")],
    )
    .await;
    let port = stack.cache.port;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        held.push(stream);
    }
    let fifth = tokio::spawn(async move { raw_get(port, "/healthz").await.status });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth connection was served while four were open"
    );
    held.pop();
    assert_eq!(fifth.await.unwrap(), 200, "served once a connection closed");
}

#[tokio::test]
async fn station_ids_a_client_makes_up_never_become_tags() {
    let stack = ExecutableStack::start(RedisServer::shared().port(), &[]).await;
    let made_up: Vec<String> = (0..100).map(|i| format!("zz_made_up_{i}")).collect();
    let answer = raw_get(
        stack.cache.port,
        &format!("/air_quality?id_entity={}", made_up.join(",")),
    )
    .await;
    assert_eq!(answer.status, 404, "stations that do not exist");
    let problem: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(problem["unknown_stations"].as_array().unwrap().len(), 100);
    let mixed = "/air_quality?id_entity=zz_made_up_1,aq_jaen&limit=1";
    assert_eq!(raw_get(stack.cache.port, mixed).await.status, 404);
    let real = "/air_quality?id_entity=aq_jaen&limit=1&format=json";
    let answer = raw_get(stack.rest.port, real).await;
    assert_eq!(answer.header("surrogate-key"), Some("aq_jaen"));
    assert_eq!(raw_get(stack.cache.port, real).await.status, 200);

    let mut redis = RedisServer::shared().client().await;
    // Writes to Redis follow the responses: wait for the one entry stored.
    let stored = integration_tests::redis::entry_keys(&mut redis, &stack.key_prefix, 1).await;
    assert_eq!(stored.len(), 1, "the 404s are not stored: {stored:?}");
    let all = keys(&mut redis, &stack.key_prefix).await;
    let invented: Vec<&String> = all.iter().filter(|k| k.contains("zz_made_up")).collect();
    assert!(invented.is_empty(), "{invented:?}");
    let station_tag = format!("{}:tag:key:aq_jaen", stack.key_prefix);
    assert!(all.contains(&station_tag), "{all:?}");
    for key in all.iter().filter(|k| k.contains(":tag:")) {
        let kind: String = redis::cmd("TYPE")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        assert_eq!(
            kind, "zset",
            "{key}: members scored by expiry, so they are trimmed"
        );
    }
}

#[tokio::test]
async fn a_tag_set_holds_only_live_entries_and_expires_with_the_last() {
    let stack = ExecutableStack::start(
        RedisServer::shared().port(),
        &[
            ("RESPONSE_MAX_AGE_SECONDS", "1"),
            ("CACHE_GRACE_SECONDS", "1"),
        ],
    )
    .await;
    let mut redis = RedisServer::shared().client().await;
    let tag = format!("{}:tag:path:/air_quality", stack.key_prefix);
    for limit in 1..=20 {
        let path = format!("/air_quality?limit={limit}&format=json");
        let answer = raw_get(stack.cache.port, &path).await;
        assert_eq!(answer.status, 200);
    }
    let stored = integration_tests::redis::entry_keys(&mut redis, &stack.key_prefix, 20).await;
    assert_eq!(stored.len(), 20);
    let members: usize = redis::cmd("ZCARD")
        .arg(&tag)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(members, 20);
    // Each entry lives freshness + grace = 2 s; then one more URL is stored.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    raw_get(stack.cache.port, "/air_quality?limit=21").await;
    let trimmed = integration_tests::eventually(Duration::from_secs(2), || {
        let (mut redis, tag) = (redis.clone(), tag.clone());
        async move {
            let members: usize = redis::cmd("ZCARD")
                .arg(&tag)
                .query_async(&mut redis)
                .await
                .unwrap();
            members == 1
        }
    })
    .await;
    assert!(trimmed, "expired members stay in {tag}");
    let ttl_ms: i64 = redis::cmd("PTTL")
        .arg(&tag)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        (1..=2_000).contains(&ttl_ms),
        "{tag} lives {ttl_ms} ms, its entry 2 s"
    );
}

#[tokio::test]
async fn a_purge_with_a_wrong_token_is_refused_before_its_body_is_read() {
    let stack = ExecutableStack::start(
        RedisServer::shared().port(),
        &[("CACHE_PURGE_TOKEN", "the-right-token")],
    )
    .await;
    // The head announces 2 MB that never come: the answer cannot wait for them.
    let head = "POST /_cache/purge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\n\
                Content-Type: application/json\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n";
    let answer = raw_exchange(stack.cache.admin_port, head.as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    let big = format!(
        "POST /_cache/purge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer the-right-token\r\n\
         Content-Length: 100000\r\nConnection: close\r\n\r\n{}",
        " ".repeat(100_000)
    );
    let answer = raw_exchange(stack.cache.admin_port, big.as_bytes())
        .await
        .unwrap();
    assert_eq!(answer.status, 413, "{}", answer.text());
}

#[tokio::test]
async fn clients_that_abort_mid_fill_leave_no_fill_lock_behind() {
    let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = slow.clone();
    let origin = TestOrigin::start(move |_| {
        let delay = if switch.load(Ordering::SeqCst) {
            2000
        } else {
            0
        };
        Reply::ok("fill me")
            .header("cache-control", "max-age=60")
            .delayed(Duration::from_millis(delay))
    })
    .await;
    let mut env = cache_env(RedisServer::shared().port(), origin.port);
    env.extend(vars(&[("BACKEND_CHANGES_PATH", ""), ("RUST_LOG", "warn")]));
    let prefix = env
        .iter()
        .find(|(k, _)| k == "CACHE_KEY_PREFIX")
        .unwrap()
        .1
        .clone();
    let cache = tokio::task::spawn_blocking(move || Service::start("api-cache", &env))
        .await
        .unwrap();
    assert_eq!(raw_get(cache.port, "/aborted").await.status, 200);
    slow.store(true, Ordering::SeqCst);
    // Each asks to revalidate (a fill under the lock) and gives up long before the origin answers.
    let no_cache = b"GET /aborted HTTP/1.1\r\nHost: x\r\nCache-Control: no-cache\r\n\r\n";
    for _ in 0..30 {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", cache.port))
            .await
            .unwrap();
        stream.write_all(no_cache).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(stream);
    }
    let redis = RedisServer::shared().client().await;
    let released = integration_tests::eventually(Duration::from_secs(3), || {
        let mut redis = redis.clone();
        let prefix = prefix.clone();
        async move {
            keys(&mut redis, &prefix)
                .await
                .iter()
                .all(|k| !k.ends_with(":lock"))
        }
    })
    .await;
    assert!(released, "a fill lock outlived the requests that took it");
}

/// One request of the hostile load: the `n`th of a deterministic mix.
fn hostile_request(n: usize) -> Vec<u8> {
    // A distinct cache-busting URL each time: a different start second.
    let start = time::macros::datetime!(2016-10-01 00:00 UTC) + time::Duration::seconds(n as i64);
    let start = start
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let busting = format!("/air_quality?from={start}&limit={}", 1 + n % 20);
    let mut headers = String::new();
    let target: Vec<u8> = match n % 20 {
        0 => format!("{}/x/../air_quality/.?from={start}", "/.".repeat(n % 500)).into_bytes(),
        1 => format!("{busting}&pad={}", "a".repeat(6_000 + n % 1_000)).into_bytes(),
        2 => format!("{busting}&pad={}", "b".repeat(9_000)).into_bytes(),
        3 => [b"/air_quality/\xff\xfe".as_slice(), start.as_bytes()].concat(),
        4 => format!("/air_quality%FF%FE?from={start}").into_bytes(),
        5 => [busting.as_bytes(), b"&id_entity=\xff\xfe\xfd"].concat(),
        6 => format!("{busting}&id_entity=%FF%FE").into_bytes(),
        7 => {
            headers = format!("X-Junk: {}\r\n", "j".repeat(20_000));
            busting.into_bytes()
        }
        8 => {
            headers = (0..60)
                .map(|i| format!("X-Junk-{i}: {}\r\n", "k".repeat(200)))
                .collect();
            busting.into_bytes()
        }
        9 => format!("{busting}&unknown{n}=1").into_bytes(),
        10 => format!("/../air_quality?from={start}").into_bytes(),
        11 => format!("{busting}{}", "&a=1".repeat(70)).into_bytes(),
        12 => format!("/air_quality?from={start}&%zz=1").into_bytes(),
        _ => busting.into_bytes(),
    };
    [
        b"GET ".as_slice(),
        &target,
        b" HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: gzip\r\n",
        headers.as_bytes(),
        b"Connection: close\r\n\r\n",
    ]
    .concat()
}

/// Sends requests `range` through 50 connections at a time; counts statuses
/// (0: no answer at all).
async fn send_hostile_load(port: u16, range: std::ops::Range<usize>) -> BTreeMap<u16, usize> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let workers = (0..50).map(|_| {
        let next = next.clone();
        let end = range.end;
        tokio::spawn(async move {
            let mut statuses = BTreeMap::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= end {
                    return statuses;
                }
                let status = raw_exchange(port, &hostile_request(n))
                    .await
                    .map_or(0, |answer: RawResponse| answer.status);
                *statuses.entry(status).or_insert(0) += 1;
            }
        })
    });
    let mut statuses = BTreeMap::new();
    for worker in futures_util::future::join_all(workers).await {
        for (status, count) in worker.unwrap() {
            *statuses.entry(status).or_insert(0) += count;
        }
    }
    statuses
}

/// Bounds the load must stay under (the Kubernetes limit is 512 MiB; Redis
/// in compose has 256 MB).
const MAX_CACHE_RESIDENT_MIB: f64 = 160.0;
const MAX_REDIS_USED_MIB: f64 = 64.0;

#[tokio::test]
async fn ten_thousand_hostile_requests_leave_memory_and_redis_bounded() {
    let redis = RedisServer::start();
    let mut stack = ExecutableStack::start(redis.port(), &[]).await;
    let mut connection = redis.client().await;
    let started = Instant::now();

    let with_origin = send_hostile_load(stack.cache.port, 0..8_000).await;
    let server_errors: Vec<_> = with_origin.iter().filter(|(s, _)| **s >= 500).collect();
    assert!(
        server_errors.is_empty(),
        "{with_origin:?}\n{}",
        stack.cache.log_tail()
    );
    assert!(
        !with_origin.contains_key(&0),
        "requests went unanswered: {with_origin:?}"
    );

    stack.rest.kill();
    let without_origin = send_hostile_load(stack.cache.port, 8_000..10_000).await;
    for (status, count) in &without_origin {
        assert!(
            *status < 500 || matches!(status, 502 | 504),
            "{count} × {status} with the origin stopped: {without_origin:?}"
        );
    }
    assert!(!without_origin.contains_key(&0), "{without_origin:?}");

    let resident = mib(stack.cache.peak_resident_kib());
    let redis_used = redis_used_memory(&mut connection).await as f64 / (1024.0 * 1024.0);
    let all = keys(&mut connection, "").await;
    let mut without_ttl = Vec::new();
    for key in &all {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        if ttl == -1 {
            without_ttl.push(key.clone());
        }
    }
    println!(
        "10,000 hostile requests in {:.1} s: origin up {with_origin:?}, origin stopped \
         {without_origin:?}; api-cache peak RSS {resident:.1} MiB, Redis used_memory \
         {redis_used:.1} MiB in {} keys",
        started.elapsed().as_secs_f64(),
        all.len()
    );
    assert!(
        without_ttl.is_empty(),
        "keys without a TTL: {without_ttl:?}"
    );
    assert!(
        resident < MAX_CACHE_RESIDENT_MIB,
        "api-cache peak RSS {resident:.1} MiB"
    );
    assert!(
        redis_used < MAX_REDIS_USED_MIB,
        "Redis used {redis_used:.1} MiB"
    );
}
