//! api-rest on its own, against a real PostgreSQL loaded by the init script.

use std::time::Duration;

use integration_tests::apps::{spawn_rest, vars};
use integration_tests::{PostgresServer, eventually};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

fn csv() -> Vec<integration_tests::CsvRow> {
    integration_tests::committed_rows()
}

fn time_of(row: &Value) -> PrimitiveDateTime {
    let t = OffsetDateTime::parse(row["time_instant"].as_str().unwrap(), &Rfc3339).unwrap();
    assert_eq!(t.offset(), time::UtcOffset::UTC);
    PrimitiveDateTime::new(t.date(), t.time())
}

async fn rest() -> integration_tests::TestRest {
    spawn_rest(PostgresServer::shared().create_database().rest_env()).await
}

async fn rows(rest: &integration_tests::TestRest, query: &str) -> Vec<Value> {
    let response = rest.get(&format!("/air_quality{query}")).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_bare_call_returns_every_row_ordered_by_time_then_station() {
    let rest = rest().await;
    let response = rest.get("/air_quality").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let rows: Vec<Value> = response.json().await.unwrap();
    assert_eq!(rows.len(), csv().len());
    let keys: Vec<(PrimitiveDateTime, String)> = rows
        .iter()
        .map(|r| (time_of(r), r["id_entity"].as_str().unwrap().to_owned()))
        .collect();
    assert!(
        keys.windows(2).all(|w| w[0] < w[1]),
        "not ordered by (time_instant, id_entity)"
    );
    let fields: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(fields.len(), 8);
}

#[tokio::test]
async fn sampled_rows_round_trip_value_for_value_with_empty_readings_as_null() {
    let rest = rest().await;
    let all = rows(&rest, "").await;
    let csv = csv();
    let with_gap = csv
        .iter()
        .position(|r| r.2.iter().any(Option::is_none))
        .expect("the CSV has empty readings");
    for index in [0, 1234, csv.len() / 2, csv.len() - 1, with_gap] {
        let (time, station, readings) = &csv[index];
        let row = all
            .iter()
            .find(|r| r["id_entity"] == station.as_str() && time_of(r) == *time)
            .unwrap_or_else(|| panic!("CSV row {index} not served"));
        for (i, name) in ["so2", "no2", "co", "o3", "pm10", "pm2_5"]
            .iter()
            .enumerate()
        {
            assert_eq!(row[name].as_f64(), readings[i], "row {index} {name}");
            assert_eq!(
                row[name].is_null(),
                readings[i].is_none(),
                "row {index} {name}"
            );
        }
    }
}

#[tokio::test]
async fn stations_can_be_filtered_one_or_several_at_a_time() {
    let rest = rest().await;
    let jaen = rows(&rest, "?id_entity=aq_jaen").await;
    assert_eq!(
        jaen.len(),
        csv().iter().filter(|r| r.1 == "aq_jaen").count()
    );
    assert!(jaen.iter().all(|r| r["id_entity"] == "aq_jaen"));
    let two = rows(&rest, "?id_entity=aq_jaen,aq_nevero").await;
    assert_eq!(two.len(), 2 * jaen.len());
    let unknown = rest.get("/air_quality?id_entity=aq_jaen,aq_nowhere").await;
    assert_eq!(unknown.status(), 404, "a station that does not exist");
    let problem: Value = unknown.json().await.unwrap();
    assert_eq!(
        problem["unknown_stations"],
        serde_json::json!(["aq_nowhere"])
    );
}

#[tokio::test]
async fn a_station_without_measurements_matches_nothing_and_is_no_error() {
    let db = PostgresServer::shared().create_database();
    db.add_station("aq_empty").await;
    let rest = spawn_rest(db.rest_env()).await;
    assert!(rows(&rest, "?id_entity=aq_empty").await.is_empty());
}

#[tokio::test]
async fn from_and_to_are_a_half_open_range() {
    let rest = rest().await;
    let csv = csv();
    // Two exact instants from the data: the first is included, the second excluded.
    let (from, to) = (csv[600].0, csv[900].0);
    let stamp = |t: PrimitiveDateTime| t.assume_utc().format(&Rfc3339).unwrap();
    let got = rows(&rest, &format!("?from={}&to={}", stamp(from), stamp(to))).await;
    let expected = csv.iter().filter(|r| r.0 >= from && r.0 < to).count();
    assert_eq!(got.len(), expected);
    assert_eq!(time_of(&got[0]), from);
    assert!(got.iter().all(|r| time_of(r) < to));

    // Dates mean midnight UTC, and offsets are honoured.
    let day = rows(&rest, "?from=2016-10-02&to=2016-10-03").await;
    assert_eq!(day.len(), 6 * 24);
    let shifted = rows(
        &rest,
        "?from=2016-10-02T02:00:00%2B02:00&to=2016-10-03T00:00:00Z",
    )
    .await;
    assert_eq!(shifted.len(), 6 * 24);
}

#[tokio::test]
async fn order_and_limit_shape_the_result() {
    let rest = rest().await;
    let first = rows(&rest, "?limit=5").await;
    let last = rows(&rest, "?order=desc&limit=5").await;
    assert_eq!(first.len(), 5);
    assert_eq!(last.len(), 5);
    assert!(time_of(&last[0]) > time_of(&last[4]));
    assert!(time_of(&first[4]) < time_of(&last[4]));
    let all = rows(&rest, "?order=asc").await;
    assert_eq!(&all[..5], &first[..]);
    assert_eq!(all.last(), last.first());
}

#[tokio::test]
async fn every_invalid_parameter_is_a_400_problem_naming_it_and_its_value() {
    let rest = spawn_rest({
        let mut env = PostgresServer::shared().create_database().rest_env();
        env.extend(vars(&[("QUERY_MAX_LIMIT", "50")]));
        env
    })
    .await;
    let cases = [
        ("limit=0", "limit", "0"),
        ("limit=51", "limit", "51"),
        ("limit=many", "limit", "many"),
        ("limit=-3", "limit", "-3"),
        ("order=sideways", "order", "sideways"),
        ("from=yesterday", "from", "yesterday"),
        ("to=2016-02-30", "to", "2016-02-30"),
        (
            "from=2016-10-05&to=2016-10-01",
            "from",
            "2016-10-05T00:00:00Z",
        ),
        (
            "from=2016-10-05&to=2016-10-05",
            "to",
            "2016-10-05T00:00:00Z",
        ),
        ("id_entity=", "id_entity", ""),
        (
            "id_entity=aq_jaen,,aq_salvia",
            "id_entity",
            "aq_jaen,,aq_salvia",
        ),
        (
            "id_entity=x%27%3B%20DROP%20TABLE",
            "id_entity",
            "x'; DROP TABLE",
        ),
        ("station=aq_jaen", "station", "aq_jaen"),
        ("limit=1&limit=2", "limit", "2"),
    ];
    for (query, name, value) in cases {
        let response = rest.get(&format!("/air_quality?{query}")).await;
        assert_eq!(response.status(), 400, "{query}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{query}"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["status"], 400);
        let named = problem["invalid_params"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == name && p["value"] == value);
        assert!(named, "{query}: {problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(name),
            "{query}: {problem}"
        );
    }
}

#[tokio::test]
async fn the_service_describes_itself_and_reports_health_and_metrics() {
    let rest = rest().await;
    let index: Value = rest.get("/").await.json().await.unwrap();
    assert_eq!(index["name"], "api-rest");
    assert!(
        index["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/air_quality")
    );
    assert_eq!(rest.admin("/healthz").await.status(), 200);
    assert_eq!(rest.admin("/readyz").await.status(), 200);
    // Read the bodies: rows are counted as they are streamed.
    rest.get("/air_quality?limit=1").await.text().await.unwrap();
    rest.get("/air_quality?limit=0").await.text().await.unwrap();
    let metrics = rest.metrics().await;
    let count = |labels: &[(&str, &str)]| {
        integration_tests::metrics::sample(&metrics, "http_requests_total", labels)
    };
    assert_eq!(count(&[("route", "/air_quality"), ("status", "200")]), 1.0);
    assert_eq!(count(&[("route", "/air_quality"), ("status", "400")]), 1.0);
    assert!(metrics.contains("http_request_duration_seconds_bucket{route=\"/air_quality\""));
    assert_eq!(
        integration_tests::metrics::sample(&metrics, "api_rest_rows_streamed_total", &[]),
        1.0
    );
}

#[tokio::test]
async fn unknown_paths_and_write_methods_get_problems() {
    let rest = rest().await;
    let response = rest.get("/nothing/here").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let response = rest
        .client()
        .post(rest.url("/air_quality"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn sql_errors_are_logged_not_sent_to_the_client() {
    let mut env = PostgresServer::shared().create_database().rest_env();
    env.extend(vars(&[("POSTGRES_API_SCHEMA", "no_such_schema")]));
    let rest = spawn_rest(env).await;
    let response = rest.get("/air_quality").await;
    assert_eq!(response.status(), 500);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body = response.text().await.unwrap();
    for leak in [
        "relation",
        "does not exist",
        "air_quality_measurements",
        "SELECT",
    ] {
        assert!(!body.contains(leak), "{leak} leaked: {body}");
    }
    assert_eq!(rest.admin("/readyz").await.status(), 503);
}

fn fast_failing(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut env = env;
    env.extend(vars(&[
        ("POSTGRES_ACQUIRE_TIMEOUT_MS", "500"),
        ("READINESS_TIMEOUT_MS", "500"),
    ]));
    env
}

async fn is_ready(rest: &integration_tests::TestRest) -> bool {
    rest.admin("/readyz").await.status() == 200
}

async fn assert_unavailable(rest: &integration_tests::TestRest) {
    let response = rest.get("/air_quality").await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(rest.admin("/readyz").await.status(), 503);
    assert_eq!(
        rest.admin("/healthz").await.status(),
        200,
        "liveness does not depend on the database"
    );
}

#[tokio::test]
async fn api_rest_starts_without_its_database_and_recovers_when_it_arrives() {
    let mut server = PostgresServer::start();
    let db = server.init_database("postgres");
    server.stop();
    let rest = spawn_rest(fast_failing(db.rest_env())).await;
    assert_unavailable(&rest).await;

    server.start_again();
    assert!(
        eventually(Duration::from_secs(15), || is_ready(&rest)).await,
        "readiness never came back"
    );
    assert_eq!(rows(&rest, "?limit=3").await.len(), 3);
}

#[tokio::test]
async fn a_database_outage_is_a_503_and_service_resumes_after_it() {
    let mut server = PostgresServer::start();
    let db = server.init_database("postgres");
    let rest = spawn_rest(fast_failing(db.rest_env())).await;
    assert_eq!(rows(&rest, "?limit=3").await.len(), 3);

    server.stop();
    assert_unavailable(&rest).await;

    server.start_again();
    assert!(
        eventually(Duration::from_secs(15), || is_ready(&rest)).await,
        "readiness never came back"
    );
    assert_eq!(rows(&rest, "?limit=3").await.len(), 3);
}

#[tokio::test]
async fn rows_are_streamed_while_the_query_still_runs() {
    let db = PostgresServer::shared().create_database();
    let loaded = db
        .load_generated(datagen::Options {
            rows: Some(300_000),
            ..datagen::Options::default()
        })
        .await;
    let rest = spawn_rest(db.rest_env()).await;
    let mut response = rest.get("/air_quality").await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"["));

    // The client now stops reading. Had api-rest gathered every row before
    // answering, the query would be over; streamed with backpressure, it stays
    // open, waiting for the client.
    let mut admin = db.admin().await;
    for _ in 0..5 {
        let running: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND usename = 'api' AND state = 'active' \
             AND query LIKE '%FROM air_quality_measurements%'",
        )
        .bind(&db.name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(
            running, 1,
            "the query should still be running while the client does not read"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Reading on delivers the whole, valid array.
    let mut body = first.to_vec();
    while let Some(chunk) = response.chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    let rows: Vec<Value> = serde_json::from_slice(&body).unwrap();
    assert_eq!(rows.len() as u64, loaded);
}

async fn insert_row(db: &integration_tests::TestDatabase, time: &str) {
    db.add_station("aq_new").await;
    let mut admin = db.admin().await;
    sqlx::query("INSERT INTO api.air_quality_measurements (time_instant, id_entity, so2) VALUES ($1::timestamp, 'aq_new', 1.5)")
        .bind(time)
        .execute(&mut admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn validators_come_from_the_data_version_and_304s_read_no_rows() {
    let db = PostgresServer::shared().create_database();
    let rest = spawn_rest(db.rest_env()).await;
    let response = rest.get("/air_quality?id_entity=aq_jaen&limit=5").await;
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let modified = response.headers()["last-modified"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "a strong ETag: {etag}"
    );
    assert_eq!(response.headers()["cache-control"], "public, max-age=30");
    response.text().await.unwrap();
    let streamed = rest.metric("api_rest_rows_streamed_total", &[]).await;

    // The same query spelled differently has the same validator.
    let same = rest.get("/air_quality?limit=5&id_entity=aq_jaen").await;
    assert_eq!(same.headers()["etag"].to_str().unwrap(), etag);
    same.text().await.unwrap();
    let other = rest.get("/air_quality?id_entity=aq_jaen&limit=6").await;
    assert_ne!(other.headers()["etag"].to_str().unwrap(), etag);
    other.text().await.unwrap();
    let streamed = streamed + 5.0 + 6.0;

    for (name, value) in [
        ("if-none-match", etag.as_str()),
        ("if-modified-since", modified.as_str()),
    ] {
        let response = rest
            .client()
            .get(rest.url("/air_quality?id_entity=aq_jaen&limit=5"))
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 304, "{name}");
        assert_eq!(response.headers()["etag"].to_str().unwrap(), etag);
        assert!(response.bytes().await.unwrap().is_empty());
    }
    assert_eq!(
        rest.metric("api_rest_rows_streamed_total", &[]).await,
        streamed,
        "a 304 streams no row"
    );

    // A change to the table is a new version: the old validator no longer matches.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    insert_row(&db, "2016-10-01 00:30:00").await;
    let response = rest
        .client()
        .get(rest.url("/air_quality?id_entity=aq_jaen&limit=5"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_ne!(response.headers()["etag"].to_str().unwrap(), etag);
    assert_ne!(
        response.headers()["last-modified"].to_str().unwrap(),
        modified
    );
    let head = rest
        .client()
        .head(rest.url("/air_quality"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers().contains_key("etag"));
}

#[tokio::test]
async fn a_data_change_reaches_cache_clients_at_the_next_revalidation() {
    let stack =
        integration_tests::apps::Stack::spawn_with(&[("RESPONSE_MAX_AGE_SECONDS", "1")], &[]).await;
    let before: Vec<Value> = stack
        .cache
        .get("/air_quality?from=2016-10-01&to=2016-10-01T01:00:00")
        .await
        .json()
        .await
        .unwrap();
    insert_row(&stack.db, "2016-10-01 00:30:00").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let response = stack
        .cache
        .get("/air_quality?from=2016-10-01&to=2016-10-01T01:00:00")
        .await;
    let status = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        status.starts_with("api-cache; fwd=stale; fwd-status=200; stored"),
        "{status}"
    );
    let after: Vec<Value> = response.json().await.unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.iter().any(|r| r["id_entity"] == "aq_new"));
}
