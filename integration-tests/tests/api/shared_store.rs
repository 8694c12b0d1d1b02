//! The shared-store scenarios on one Redis node and on a Redis Cluster (3
//! masters, 3 replicas, started by the harness): hits across replicas,
//! variants, purges, a stampede over 3 replicas, invalidation on a data
//! change; and a master killed under load.

// The scenarios are plain functions run by the tests below them, and they
// print their figures as the tests do.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use integration_tests::apps::{Stack, cache_env, cache_env_for, spawn_cache, unique_prefix, vars};
use integration_tests::load::Load;
use integration_tests::origin::{Reply, TestOrigin};
use integration_tests::{PostgresServer, RedisCluster, RedisServer, TestCache, eventually};
use serde_json::{Value, json};

/// Where api-cache keeps what replicas share.
#[derive(Debug, Clone, Copy)]
enum Redis {
    Node,
    Cluster,
}

impl Redis {
    /// The variables that point api-cache at it (on top of `cache_env`'s).
    fn vars(self) -> Vec<(String, String)> {
        match self {
            Self::Node => Vec::new(),
            Self::Cluster => vars(&[("REDIS_CLUSTER_NODES", &RedisCluster::shared().nodes_var())]),
        }
    }
}

/// Runs a scenario once on each: `<scenario>::on_one_node`, `<scenario>::on_a_cluster`.
macro_rules! on_node_and_cluster {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn on_one_node() {
                super::$scenario(super::Redis::Node).await;
            }

            #[tokio::test]
            async fn on_a_cluster() {
                super::$scenario(super::Redis::Cluster).await;
            }
        }
    )*};
}

on_node_and_cluster!(
    a_replica_hits_what_another_stored,
    each_variant_is_stored_and_served_to_its_requests,
    purges_by_url_prefix_and_surrogate_key_reach_every_replica,
    three_replicas_make_one_origin_request_for_300_concurrent_requests,
    a_row_inserted_with_psql_is_visible_through_every_replica_within_a_second,
    redis_round_trips_per_miss_and_per_hit,
);

/// The stack on `redis`, plus a second api-cache sharing its keys.
async fn two_replicas(
    redis: Redis,
    rest_vars: &[(&str, &str)],
    cache_vars: &[(&str, &str)],
) -> (Stack, TestCache) {
    let mut all = redis.vars();
    all.extend(vars(cache_vars));
    let pairs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let stack = Stack::spawn_with(rest_vars, &pairs).await;
    let mut env = cache_env_for(RedisServer::shared().port(), &stack.rest);
    env.extend(all);
    env.extend(vars(&[("CACHE_KEY_PREFIX", stack.cache.key_prefix())]));
    let other = spawn_cache(env).await;
    other.wait_for_change_feed().await;
    (stack, other)
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
}

async fn x_cache(cache: &TestCache, path: &str, accept: &str) -> (String, String) {
    let response = cache
        .client()
        .get(cache.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    let seen = (
        header(&response, "x-cache"),
        header(&response, "content-type"),
    );
    response.bytes().await.unwrap();
    seen
}

/// `X-Cache` of a GET with `Accept: application/json`.
async fn status(cache: &TestCache, path: &str) -> String {
    x_cache(cache, path, "application/json").await.0
}

/// A stored answer is a hit for a replica that never saw it: it comes from Redis.
/// (Writes to Redis are in the background: the other replica may look first.)
async fn a_replica_hits_what_another_stored(redis: Redis) {
    let (stack, other) = two_replicas(redis, &[], &[]).await;
    for path in [
        "/air_quality?limit=5",
        "/stations",
        "/air_quality?id_entity=aq_jaen",
    ] {
        assert_eq!(status(&stack.cache, path).await, "MISS", "{path}");
        let shared = eventually(Duration::from_secs(2), || async {
            status(&other, path).await == "HIT"
        })
        .await;
        assert!(shared, "{path} was not a hit for the other replica");
    }
}

/// `Vary: Accept`: one entry per Accept, each served to its own requests, by
/// both replicas.
async fn each_variant_is_stored_and_served_to_its_requests(redis: Redis) {
    let (stack, other) = two_replicas(redis, &[], &[]).await;
    let path = "/stations";
    let (first, json_type) = x_cache(&stack.cache, path, "application/json").await;
    assert_eq!(first, "MISS");
    let (first, csv_type) = x_cache(&stack.cache, path, "text/csv").await;
    assert_eq!(first, "MISS", "the CSV variant is an entry of its own");
    assert!(json_type.starts_with("application/json"), "{json_type}");
    assert!(csv_type.starts_with("text/csv"), "{csv_type}");
    for (accept, expected) in [("application/json", &json_type), ("text/csv", &csv_type)] {
        let served = eventually(Duration::from_secs(2), || async {
            x_cache(&other, path, accept).await == ("HIT".to_owned(), expected.clone())
        })
        .await;
        assert!(served, "the other replica did not hit the {accept} variant");
    }
}

async fn purge(cache: &TestCache, body: Value) -> Value {
    let response = cache
        .client()
        .post(cache.admin_url("/_cache/purge"))
        .bearer_auth("purge-secret")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{body}");
    response.json().await.unwrap()
}

/// A purge removes the entries from Redis (tag sets in their own slots) and
/// from every replica's local tier (the event reaches them).
async fn purges_by_url_prefix_and_surrogate_key_reach_every_replica(redis: Redis) {
    let token = [("CACHE_PURGE_TOKEN", "purge-secret")];
    let (stack, other) = two_replicas(redis, &[], &token).await;
    let paths = [
        "/air_quality?id_entity=aq_jaen",
        "/air_quality?id_entity=aq_salvia",
        "/air_quality?limit=3",
        "/stations",
    ];
    for cache in [&stack.cache, &other] {
        for path in paths {
            status(cache, path).await;
            let hit = eventually(Duration::from_secs(2), || async {
                status(cache, path).await == "HIT"
            });
            assert!(hit.await, "{path}");
        }
    }

    // By surrogate key: the Jaén answer and the two holding every station.
    let purged = purge(&stack.cache, json!({"surrogate_key": "aq_jaen"})).await;
    assert_eq!(purged["purged"], 3, "{purged}");
    assert_eq!(
        status(&other, "/air_quality?id_entity=aq_jaen").await,
        "MISS"
    );
    assert_eq!(
        status(&other, "/air_quality?id_entity=aq_salvia").await,
        "HIT"
    );

    // By URL.
    purge(
        &stack.cache,
        json!({"url": "/air_quality?id_entity=aq_salvia"}),
    )
    .await;
    let reached = eventually(Duration::from_secs(2), || async {
        status(&other, "/air_quality?id_entity=aq_salvia").await == "MISS"
    });
    assert!(
        reached.await,
        "the URL purge did not reach the other replica"
    );

    // By path prefix: everything under /air_quality, not /stations.
    for path in paths {
        status(&stack.cache, path).await;
    }
    let purged = purge(&stack.cache, json!({"prefix": "/air_quality"})).await;
    assert_eq!(purged["purged"], 3, "{purged}");
    for path in &paths[..3] {
        let reached = eventually(Duration::from_secs(2), || async {
            status(&other, path).await == "MISS"
        });
        assert!(reached.await, "{path} stayed cached on the other replica");
    }
    let kept = eventually(Duration::from_secs(2), || async {
        status(&other, "/stations").await == "HIT"
    });
    assert!(
        kept.await,
        "/stations was purged by the prefix /air_quality"
    );
}

/// The cross-replica fill lock (in the URL's slot) and the fill event (on
/// its sharded channel) make one origin request of 300.
async fn three_replicas_make_one_origin_request_for_300_concurrent_requests(redis: Redis) {
    let origin = TestOrigin::start(|_| {
        Reply::ok("x".repeat(2000))
            .header("content-type", "text/plain")
            .header("cache-control", "max-age=60")
            .delayed(Duration::from_millis(300))
    })
    .await;
    let prefix = unique_prefix();
    let mut replicas = Vec::new();
    for _ in 0..3 {
        let mut env = cache_env(RedisServer::shared().port(), origin.port);
        env.extend(redis.vars());
        env.extend(vars(&[
            ("CACHE_KEY_PREFIX", &prefix),
            ("BACKEND_CHANGES_PATH", ""),
        ]));
        replicas.push(spawn_cache(env).await);
    }
    let responses = join_all((0..300).map(|i| replicas[i % 3].get("/cold"))).await;
    for response in responses {
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap().len(), 2000);
    }
    println!(
        "{redis:?}: 300 concurrent requests over 3 replicas, {} origin request(s)",
        origin.count("/cold")
    );
    assert_eq!(origin.count("/cold"), 1, "exactly one origin request");
}

async fn a_row_inserted_with_psql_is_visible_through_every_replica_within_a_second(redis: Redis) {
    // Freshness of an hour: only the change feed can make the new row appear.
    let (stack, other) = two_replicas(redis, &[("RESPONSE_MAX_AGE_SECONDS", "3600")], &[]).await;
    stack.db.add_station("aq_psql").await;
    let path = "/air_quality?from=2016-10-01&to=2016-10-01T01:00:00";
    for cache in [&stack.cache, &other] {
        status(cache, path).await;
    }
    let inserted = Instant::now();
    PostgresServer::shared().psql(
        &stack.db.name,
        "INSERT INTO api.air_quality_measurements (time_instant, id_entity, no2) \
         VALUES ('2016-10-01 00:30:00', 'aq_psql', 12.5)",
    );
    for (name, cache) in [("first", &stack.cache), ("second", &other)] {
        let visible = eventually(Duration::from_secs(1), || async {
            let rows: Vec<Value> = cache.get(path).await.json().await.unwrap();
            rows.iter().any(|r| r["id_entity"] == "aq_psql")
        });
        assert!(visible.await, "the new row did not appear within a second");
        println!(
            "{redis:?}: insert visible through the {name} replica after {} ms",
            inserted.elapsed().as_millis()
        );
    }
}

/// Redis operations (round trips) so far, over every kind.
async fn round_trips(cache: &TestCache) -> f64 {
    cache
        .metric("api_cache_redis_operation_duration_seconds_count", &[])
        .await
}

/// What a miss, a hit from Redis and a hit from the local tier cost in Redis
/// round trips (the capacity model in docs/scaling.md uses these).
#[expect(
    clippy::print_stdout,
    reason = "prints the figures, as the tests it runs in"
)]
async fn redis_round_trips_per_miss_and_per_hit(redis: Redis) {
    let (stack, other) = two_replicas(redis, &[], &[]).await;
    // The format by parameter: no Vary, so no Vary index to read first (a
    // URL that varies costs one more GET per hit from Redis).
    let path = "/air_quality?limit=7&id_entity=aq_jaen&format=json";
    let before = round_trips(&stack.cache).await;
    assert_eq!(status(&stack.cache, path).await, "MISS");
    // The write and the lock's release happen after the response.
    let stored = eventually(Duration::from_secs(2), || async {
        stack.cache.metric("api_cache_stored_total", &[]).await >= 1.0
    });
    assert!(stored.await);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let miss = round_trips(&stack.cache).await - before;

    let before = round_trips(&stack.cache).await;
    assert_eq!(status(&stack.cache, path).await, "HIT");
    let local_hit = round_trips(&stack.cache).await - before;

    let before = round_trips(&other).await;
    assert_eq!(status(&other, path).await, "HIT");
    let redis_hit = round_trips(&other).await - before;
    println!(
        "{redis:?}: Redis round trips per miss {miss}, per hit from Redis {redis_hit}, per hit from the local tier {local_hit}"
    );
    assert_eq!(local_hit, 0.0, "a local hit asks Redis nothing");
    assert_eq!(redis_hit, 1.0, "a hit from Redis is one GET");
    assert!(
        miss >= 4.0,
        "a miss looks up, locks, stores and unlocks: {miss}"
    );
}

/// A cluster whose nodes require AUTH (as managed ones do): the password
/// reaches every node, the subscriber's too; a wrong one only bypasses.
#[tokio::test]
async fn a_cluster_that_requires_a_password_is_used_with_redis_password() {
    let cluster = RedisCluster::start_with_password("cluster-s3cret");
    let nodes = cluster.nodes_var();
    let token = ("CACHE_PURGE_TOKEN", "purge-secret");
    let stack = Stack::spawn(&[
        ("REDIS_CLUSTER_NODES", &nodes),
        ("REDIS_PASSWORD", "cluster-s3cret"),
        token,
    ])
    .await;
    let mut env = cache_env_for(RedisServer::shared().port(), &stack.rest);
    env.extend(vars(&[
        ("REDIS_CLUSTER_NODES", &nodes),
        ("REDIS_PASSWORD", "cluster-s3cret"),
        ("CACHE_KEY_PREFIX", stack.cache.key_prefix()),
        token,
    ]));
    let other = spawn_cache(env).await;
    other.wait_for_change_feed().await;
    let path = "/air_quality?limit=4&format=json";
    assert_eq!(status(&stack.cache, path).await, "MISS");
    let shared = eventually(Duration::from_secs(2), || async {
        status(&other, path).await == "HIT"
    });
    assert!(shared.await, "no hit from the cluster");
    // A purge on one replica reaches the other's local copy: the sharded
    // subscription authenticated too.
    purge(&stack.cache, json!({"url": path})).await;
    let reached = eventually(Duration::from_secs(2), || async {
        status(&other, path).await == "MISS"
    });
    assert!(
        reached.await,
        "the purge event did not reach the other replica"
    );

    let mut env = cache_env_for(RedisServer::shared().port(), &stack.rest);
    env.extend(vars(&[
        ("REDIS_CLUSTER_NODES", &nodes),
        ("REDIS_PASSWORD", "wrong"),
    ]));
    let wrong = spawn_cache(env).await;
    let response = wrong.get(path).await;
    assert_eq!(response.status(), 200, "a wrong password only bypasses");
    assert_eq!(header(&response, "x-cache"), "BYPASS");
}

/// Kills a master under load (its replica takes over after the node
/// timeout): no request fails, the breaker and the local tier carry the
/// outage, and hits come from the cluster again once it has failed over.
#[tokio::test]
async fn a_master_killed_under_load_fails_no_request_and_hits_resume_after_the_failover() {
    let mut cluster = RedisCluster::start();
    let nodes = [("REDIS_CLUSTER_NODES", cluster.nodes_var())];
    let nodes: Vec<(&str, &str)> = nodes.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stack = Stack::spawn(&[nodes[0]]).await;
    // A replica without a local tier: its hits can only come from the cluster.
    let mut env = cache_env_for(RedisServer::shared().port(), &stack.rest);
    env.extend(vars(&[
        nodes[0],
        ("CACHE_KEY_PREFIX", stack.cache.key_prefix()),
        ("CACHE_LOCAL_MAX_BYTES", "0"),
    ]));
    let probe = spawn_cache(env).await;
    probe.wait_for_change_feed().await;
    let cache = stack.cache;

    const TOTAL: usize = 24_000;
    // Mostly hot keys (local hits), every tenth one new (a Redis lookup, an
    // origin request, a Redis write).
    let started = Instant::now();
    let load = Load::start(&cache, 8, TOTAL, |n| match n % 10 {
        0 => small_new_url("2016-10-01", n),
        _ => format!("/air_quality?limit={}", 1 + n % 20),
    });
    load.until_sent(TOTAL / 12).await;
    println!(
        "the first {} requests took {} ms",
        TOTAL / 12,
        started.elapsed().as_millis()
    );
    let killed_at = Instant::now();
    let port = cluster.kill_a_master();
    // When does the cluster itself say it is whole again (a replica promoted)?
    let cluster = std::sync::Arc::new(cluster);
    let failed_over = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || {
            cluster
                .wait_until_failed_over(port, Duration::from_secs(30))
                .then(|| killed_at.elapsed())
        }
    });
    // While the load goes on: when are hits served from the cluster again?
    let resumed = async {
        let round = AtomicUsize::new(0);
        let resumed = eventually(Duration::from_secs(30), || {
            hits_come_from_the_cluster(&cache, &probe, round.fetch_add(1, Ordering::SeqCst))
        })
        .await;
        (resumed, killed_at.elapsed())
    };
    let load = async {
        let (failed, failures) = load.finish().await;
        (failed, failures, killed_at.elapsed())
    };
    let ((resumed, resumed_after), (failed, failures, load_after)) = tokio::join!(resumed, load);
    println!(
        "master {port} killed under load: {TOTAL} requests, {failed} failed, the last {} in {} ms after the kill",
        TOTAL - TOTAL / 12,
        load_after.as_millis()
    );
    assert_eq!(
        failed, 0,
        "{}: {failures:?}",
        "requests failed because a master died"
    );
    let failed_over = failed_over.await.expect("the cluster watch");
    println!(
        "the cluster failed over {:?} ms after the master was killed; hits from the cluster resumed after {} ms",
        failed_over.map(|t| t.as_millis()),
        resumed_after.as_millis()
    );
    assert!(failed_over.is_some(), "the cluster never failed over");
    assert!(resumed, "hits did not resume after the failover");
    let opened = cache
        .metric(
            "api_cache_redis_breaker_transitions_total",
            &[("to", "open")],
        )
        .await;
    let local_hits = cache
        .metric(
            "api_cache_lookups_total",
            &[("tier", "local"), ("result", "hit")],
        )
        .await;
    println!("breaker opened {opened} time(s); local-tier hits {local_hits}");
    assert!(opened >= 1.0, "the breaker never opened");
    assert!(local_hits > 0.0, "the local tier carried nothing");
}

/// 16 new URLs (some in any master's slots) stored through `cache` are all
/// hits for `probe`, which has no local tier.
async fn hits_come_from_the_cluster(cache: &TestCache, probe: &TestCache, round: usize) -> bool {
    let paths: Vec<String> = (0..16)
        .map(|i| small_new_url("2016-11-01", round * 16 + i))
        .collect();
    for path in &paths {
        status(cache, path).await;
    }
    // The writes are in the background.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut all = true;
    for path in &paths {
        all &= status(probe, path).await == "HIT";
    }
    all
}

/// The `n`th URL of a series on `day`: two rows from a second of its own.
fn small_new_url(day: &str, n: usize) -> String {
    let (hours, minutes, seconds) = (n / 3600 % 24, n / 60 % 60, n % 60);
    format!("/air_quality?limit=2&from={day}T{hours:02}:{minutes:02}:{seconds:02}")
}
