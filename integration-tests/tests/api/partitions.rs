//! `air_quality_measurements` partitioned by month: the partitions the init
//! script makes, pruning to one month, and adding months later.

use integration_tests::{PostgresServer, TestDatabase};
use serde_json::Value;
use sqlx::AssertSqlSafe;

async fn strings(db: &TestDatabase, sql: &str) -> Vec<String> {
    let mut admin = db.admin().await;
    sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
        .fetch_all(&mut admin)
        .await
        .unwrap()
}

async fn partitions(db: &TestDatabase) -> Vec<String> {
    strings(
        db,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
          WHERE i.inhparent = 'api.air_quality_measurements'::regclass ORDER BY 1",
    )
    .await
}

/// The tables a plan reads (its nodes' `Relation Name`).
fn relations(plan: &Value, found: &mut Vec<String>) {
    if let Some(name) = plan["Relation Name"].as_str() {
        found.push(name.to_owned());
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        relations(child, found);
    }
}

/// The tables `explain` reads, after `setup`, in one psql session.
fn relations_read(db: &TestDatabase, setup: &str, explain: &str) -> Vec<String> {
    let text = PostgresServer::shared().psql_value(
        &db.name,
        &format!("{setup}; EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON) {explain}"),
    );
    // psql prints every statement's result; the plan is the last, a JSON array.
    let json = &text[text.rfind("\n[").map_or(0, |at| at + 1)..];
    let plan: Value = serde_json::from_str(json).expect("EXPLAIN's JSON");
    let mut found = Vec::new();
    relations(&plan[0]["Plan"], &mut found);
    found
}

#[tokio::test]
async fn the_init_script_makes_a_partition_per_month_of_data_and_three_ahead() {
    let db = PostgresServer::shared().create_database();
    let kind = strings(
        &db,
        "SELECT partstrat::text FROM pg_partitioned_table WHERE partrelid = 'api.air_quality_measurements'::regclass",
    )
    .await;
    assert_eq!(kind, ["r"], "partitioned by range");
    assert_eq!(
        partitions(&db).await,
        [
            "air_quality_measurements_default",
            "air_quality_measurements_y2016m10",
            "air_quality_measurements_y2016m11",
            "air_quality_measurements_y2016m12",
            "air_quality_measurements_y2017m01",
            "air_quality_measurements_y2017m02",
        ]
    );
    let in_default = strings(
        &db,
        "SELECT count(*)::text FROM api.air_quality_measurements_default",
    )
    .await;
    assert_eq!(in_default, ["0"]);
}

#[tokio::test]
async fn a_one_month_range_reads_one_partition_with_literals_and_with_bound_parameters() {
    let db = PostgresServer::shared().create_database();
    let query = "SELECT * FROM api.air_quality_measurements \
                 WHERE time_instant >= '2016-11-01' AND time_instant < '2016-12-01' \
                 ORDER BY time_instant, id_entity";
    let read = relations_read(&db, "SELECT 1", query);
    println!("one month, literals: {read:?}");
    assert_eq!(read, ["air_quality_measurements_y2016m11"]);

    // As api-rest asks: bound parameters, and a generic plan pruned at run time.
    let read = relations_read(
        &db,
        "SET plan_cache_mode = force_generic_plan; \
         PREPARE month (timestamp, timestamp) AS SELECT * FROM api.air_quality_measurements \
           WHERE time_instant >= $1 AND time_instant < $2 ORDER BY time_instant, id_entity",
        "EXECUTE month ('2016-11-01', '2016-12-01')",
    );
    println!("one month, generic plan: {read:?}");
    assert_eq!(read, ["air_quality_measurements_y2016m11"]);
}

#[tokio::test]
async fn adding_partitions_later_moves_their_rows_out_of_the_default_partition() {
    let server = PostgresServer::shared();
    let db = server.create_database();
    server.psql(
        &db.name,
        "INSERT INTO api.air_quality_measurements (time_instant, id_entity, no2) \
         VALUES ('2018-05-10 12:00', 'aq_jaen', 7.5)",
    );
    let in_default = "SELECT count(*)::text FROM api.air_quality_measurements_default";
    assert_eq!(strings(&db, in_default).await, ["1"]);
    let made = strings(
        &db,
        "SELECT api.air_quality_add_partitions('2018-05-01', '2018-06-30')::text",
    )
    .await;
    assert_eq!(made, ["2"]);
    assert_eq!(strings(&db, in_default).await, ["0"]);
    let moved = strings(
        &db,
        "SELECT count(*)::text FROM api.air_quality_measurements_y2018m05",
    )
    .await;
    assert_eq!(moved, ["1"]);
    let again = strings(
        &db,
        "SELECT api.air_quality_add_partitions('2018-05-01', '2018-06-30')::text",
    )
    .await;
    assert_eq!(again, ["0"], "existing months are left alone");
    let through_parent = strings(
        &db,
        "SELECT count(*)::text FROM api.air_quality_measurements WHERE time_instant >= '2018-01-01'",
    )
    .await;
    assert_eq!(through_parent, ["1"]);
}

#[tokio::test]
async fn each_stations_span_follows_inserts_and_deletes_without_reading_every_month() {
    let server = PostgresServer::shared();
    let db = server.create_database();
    let span = "SELECT first_time::text || ' ' || last_time::text FROM api.air_quality_spans \
                WHERE id_entity = 'aq_jaen'";
    let before = strings(&db, span).await;
    assert_eq!(
        before,
        strings(
            &db,
            "SELECT min(time_instant)::text || ' ' || max(time_instant)::text \
               FROM api.air_quality_measurements WHERE id_entity = 'aq_jaen'"
        )
        .await
    );
    server.psql(
        &db.name,
        "INSERT INTO api.air_quality_measurements (time_instant, id_entity, no2) \
         VALUES ('2016-09-30 23:00', 'aq_jaen', 1), ('2017-01-15 00:00', 'aq_jaen', 2)",
    );
    assert_eq!(
        strings(&db, span).await,
        ["2016-09-30 23:00:00 2017-01-15 00:00:00"]
    );
    server.psql(
        &db.name,
        "DELETE FROM api.air_quality_measurements \
          WHERE id_entity = 'aq_jaen' AND time_instant IN ('2016-09-30 23:00', '2017-01-15 00:00')",
    );
    assert_eq!(strings(&db, span).await, before);
}
