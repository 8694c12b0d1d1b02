//! api-rest reading from a streaming replica of its primary (made by the
//! harness with `pg_basebackup -R`): reads go to the replica; a replica whose
//! replay is paused never yields an answer older than an announced change;
//! a stopped replica costs no request.

use std::time::{Duration, Instant};

use integration_tests::apps::{TestRest, cache_env_for, spawn_cache, spawn_rest, vars};
use integration_tests::load::Load;
use integration_tests::{PostgresServer, RedisServer, TestCache, TestDatabase, eventually};
use serde_json::Value;

/// A primary with the data loaded, and its streaming replica.
struct Replicated {
    primary: PostgresServer,
    replica: PostgresServer,
    db: TestDatabase,
}

impl Replicated {
    fn start() -> Self {
        let primary = PostgresServer::start();
        primary.psql("postgres", "CREATE DATABASE air_quality");
        let db = primary.init_database("air_quality");
        let replica = primary.start_replica();
        Self {
            primary,
            replica,
            db,
        }
    }

    /// api-rest on the primary, reading from the replica.
    async fn rest(&self, extra: &[(&str, &str)]) -> TestRest {
        let mut env = self.db.rest_env();
        env.extend(vars(&[
            ("POSTGRES_READ_HOST", "127.0.0.1"),
            ("POSTGRES_READ_PORT", &self.replica.port().to_string()),
        ]));
        env.extend(vars(extra));
        spawn_rest(env).await
    }

    fn version_on(server: &PostgresServer) -> i64 {
        server
            .psql_value(
                "air_quality",
                "SELECT version FROM api.air_quality_data_version",
            )
            .parse()
            .expect("a version")
    }

    /// Waits until the replica has replayed the primary's data version.
    async fn caught_up(&self) -> bool {
        eventually(Duration::from_secs(10), || async {
            Self::version_on(&self.replica) == Self::version_on(&self.primary)
        })
        .await
    }
}

async fn reads(rest: &TestRest, from: &str) -> f64 {
    rest.metric("api_rest_reads_total", &[("from", from)]).await
}

async fn cache_for(rest: &TestRest) -> TestCache {
    let cache = spawn_cache(cache_env_for(RedisServer::shared().port(), rest)).await;
    cache.wait_for_change_feed().await;
    cache
}

#[tokio::test]
async fn reads_are_served_from_the_replica() {
    let pg = Replicated::start();
    assert!(pg.caught_up().await);
    let rest = pg.rest(&[]).await;
    for path in ["/air_quality?limit=5", "/stations", "/air_quality/latest"] {
        let response = rest.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    assert_eq!(reads(&rest, "replica").await, 3.0);
    assert_eq!(reads(&rest, "primary").await, 0.0);
    // The replica is the one answering: its sessions show api-rest.
    let sessions = pg.replica.psql_value(
        "air_quality",
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'api-rest' AND backend_type = 'client backend'",
    );
    assert_ne!(sessions, "0", "no api-rest session on the replica");
}

#[tokio::test]
async fn an_insert_is_visible_within_a_second_even_with_the_replicas_replay_paused() {
    let pg = Replicated::start();
    assert!(pg.caught_up().await);
    let rest = pg.rest(&[("RESPONSE_MAX_AGE_SECONDS", "3600")]).await;
    let cache = cache_for(&rest).await;
    pg.db.add_station("aq_replica").await;
    assert!(pg.caught_up().await);
    let path = "/air_quality?from=2016-10-01&to=2016-10-01T01:00:00";
    cache.get(path).await.bytes().await.unwrap();

    pg.replica
        .psql("air_quality", "SELECT pg_wal_replay_pause()");
    pg.primary.psql(
        "air_quality",
        "INSERT INTO api.air_quality_measurements (time_instant, id_entity, no2) \
         VALUES ('2016-10-01 00:30:00', 'aq_replica', 12.5)",
    );
    let inserted = Instant::now();
    let announced = Replicated::version_on(&pg.primary);
    let visible = eventually(Duration::from_secs(1), || async {
        let rows: Vec<Value> = cache.get(path).await.json().await.unwrap();
        rows.iter().any(|r| r["id_entity"] == "aq_replica")
    })
    .await;
    println!(
        "insert visible through api-cache with the replica paused after {} ms",
        inserted.elapsed().as_millis()
    );
    assert!(visible, "the new row did not appear within a second");
    assert!(
        Replicated::version_on(&pg.replica) < announced,
        "the replica stayed behind"
    );
    assert!(reads(&rest, "primary_replica_behind").await >= 1.0);

    // No answer stored or served is older than the announced change: every
    // URL asked now, and asked again (a hit), carries it.
    for path in [
        "/air_quality?limit=3",
        "/stations",
        "/air_quality/latest",
        path,
    ] {
        for _ in 0..2 {
            let response = cache.get(path).await;
            let version: i64 = response.headers()["data-version"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                version >= announced,
                "{path}: version {version} < {announced}"
            );
        }
    }

    pg.replica
        .psql("air_quality", "SELECT pg_wal_replay_resume()");
    assert!(pg.caught_up().await);
    let replica_reads = reads(&rest, "replica").await;
    cache
        .get("/air_quality?limit=4")
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        reads(&rest, "replica").await,
        replica_reads + 1.0,
        "reads went back to the replica once it caught up"
    );
}

#[tokio::test]
async fn with_the_replica_stopped_api_rest_reads_from_the_primary_and_fails_no_request() {
    let mut pg = Replicated::start();
    assert!(pg.caught_up().await);
    let rest = pg.rest(&[]).await;
    const TOTAL: usize = 600;
    let load = Load::start(&rest, 4, TOTAL, |n| {
        format!("/air_quality?limit={}", 1 + n % 50)
    });
    load.until_sent(TOTAL / 3).await;
    pg.replica.stop();
    let (failed, failures) = load.finish().await;
    let down = reads(&rest, "primary_replica_down").await;
    println!(
        "replica stopped under load: {TOTAL} requests, {failed} failed, {down} read from the primary"
    );
    assert_eq!(
        failed, 0,
        "{}: {failures:?}",
        "requests failed because the replica stopped"
    );
    assert!(down >= 1.0, "nothing was read from the primary");
    assert!(reads(&rest, "replica").await >= 1.0);
}
