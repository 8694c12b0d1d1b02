//! Every format every endpoint answers, and keyset pages, through api-cache.

use std::collections::HashSet;

use integration_tests::apps::Stack;
use integration_tests::{PostgresServer, committed_rows};
use serde_json::Value;

/// Each row-returning endpoint, and whether its records have a place (GeoJSON).
const ENDPOINTS: [(&str, bool); 6] = [
    ("/air_quality?id_entity=aq_jaen&limit=50", false),
    (
        "/air_quality/aggregates?interval=day&id_entity=aq_jaen&to=2016-10-11",
        false,
    ),
    ("/stations", true),
    ("/stations/aq_jaen", true),
    ("/air_quality/latest", true),
    ("/air_quality/aqi", true),
];

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
}

async fn get(stack: &Stack, path: &str, accept: Option<&str>) -> reqwest::Response {
    let mut request = stack.cache.client().get(stack.cache.url(path));
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    request.send().await.unwrap()
}

/// `path` with `name=value` added.
fn with(path: &str, name: &str, value: &str) -> String {
    let glue = if path.contains('?') { '&' } else { '?' };
    format!("{path}{glue}{name}={value}")
}

/// The objects of an NDJSON answer, one per line.
async fn ndjson_objects(response: reqwest::Response) -> Vec<Value> {
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records of a JSON answer: the array, or the one object.
fn records(json: Value) -> Vec<Value> {
    match json {
        Value::Array(items) => items,
        one => vec![one],
    }
}

#[tokio::test]
async fn every_endpoint_answers_csv_ndjson_and_geojson_where_it_has_places() {
    let stack = Stack::spawn(&[]).await;
    for (path, located) in ENDPOINTS {
        let json = records(get(&stack, path, None).await.json().await.unwrap());
        assert!(!json.is_empty(), "{path}");

        // CSV, by Accept and by parameter: a header row, one row per record.
        let by_accept = get(&stack, path, Some("text/csv")).await;
        assert_eq!(by_accept.status(), 200, "{path}");
        assert_eq!(
            header(&by_accept, "content-type"),
            "text/csv; charset=utf-8; header=present"
        );
        assert!(header(&by_accept, "vary").contains("Accept"), "{path}");
        let csv = by_accept.text().await.unwrap();
        let by_parameter = get(&stack, &with(path, "format", "csv"), None).await;
        assert_eq!(by_parameter.status(), 200, "{path}");
        assert_eq!(by_parameter.text().await.unwrap(), csv, "{path}");
        let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
        assert_eq!(lines.len(), json.len() + 1, "{path}: a header and the rows");
        let names: Vec<&str> = lines[0].split(',').collect();
        let first = json[0].as_object().unwrap();
        let leading = first.keys().next().unwrap();
        assert_eq!(names[0], leading, "{path}: columns follow the JSON fields");
        assert!(lines.iter().all(|l| !l.contains('\n')), "{path}");

        // NDJSON: one object per line, the same objects as JSON.
        let ndjson = get(&stack, path, Some("application/x-ndjson")).await;
        assert_eq!(header(&ndjson, "content-type"), "application/x-ndjson");
        assert_eq!(ndjson_objects(ndjson).await, json, "{path}");

        // GeoJSON where there are coordinates; a clear refusal elsewhere.
        let geo = get(&stack, path, Some("application/geo+json")).await;
        if located {
            assert_eq!(geo.status(), 200, "{path}");
            assert_eq!(header(&geo, "content-type"), "application/geo+json");
            let geo: Value = geo.json().await.unwrap();
            let features = match geo["type"].as_str().unwrap() {
                "FeatureCollection" => geo["features"].as_array().unwrap().clone(),
                _ => vec![geo.clone()],
            };
            assert_eq!(features.len(), json.len(), "{path}");
            let point = &features[0]["geometry"]["coordinates"];
            assert_eq!(point[0], json[0]["longitude"], "{path}: longitude first");
            assert_eq!(point[1], json[0]["latitude"], "{path}");
            assert_eq!(features[0]["id"], json[0]["id_entity"]);
        } else {
            assert_eq!(geo.status(), 406, "{path}");
            let refused = get(&stack, &with(path, "format", "geojson"), None).await;
            assert_eq!(refused.status(), 400, "{path}");
            let problem: Value = refused.json().await.unwrap();
            assert_eq!(problem["invalid_params"][0]["name"], "format", "{path}");
        }
    }
}

#[tokio::test]
async fn the_measurements_in_csv_are_the_committed_rows_with_empty_fields_for_nulls() {
    let stack = Stack::spawn(&[]).await;
    let response = get(&stack, "/air_quality?format=csv", None).await;
    assert_eq!(response.status(), 200);
    let vary = header(&response, "vary").to_ascii_lowercase();
    assert!(
        !vary.split(',').any(|name| name.trim() == "accept"),
        "chosen by parameter: does not vary with Accept ({vary})"
    );
    let csv = response.text().await.unwrap();
    let mut lines = csv.split_terminator("\r\n");
    assert_eq!(
        lines.next(),
        Some("time_instant,id_entity,so2,no2,co,o3,pm10,pm2_5")
    );
    let mut expected = committed_rows();
    expected.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), expected.len());
    for (line, (_, id, readings)) in rows.iter().zip(&expected) {
        let fields: Vec<&str> = line.split(',').collect();
        assert_eq!(fields[1], id);
        for (field, reading) in fields[2..].iter().zip(readings) {
            assert_eq!(field.parse::<f64>().ok(), *reading, "{line}");
        }
    }
    assert!(
        rows.iter().any(|l| l.contains(",,")),
        "the data has empty readings"
    );
}

#[tokio::test]
async fn an_accept_the_endpoint_cannot_meet_gets_406_naming_what_it_can() {
    let stack = Stack::spawn(&[]).await;
    for (path, _) in ENDPOINTS {
        let response = get(&stack, path, Some("text/html")).await;
        assert_eq!(response.status(), 406, "{path}");
        assert_eq!(
            header(&response, "content-type"),
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        let available: Vec<&str> = problem["available"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(available.contains(&"application/x-ndjson"), "{path}");
    }
    let preferred = get(
        &stack,
        "/air_quality?limit=1",
        Some("text/html, text/csv;q=0.5"),
    )
    .await;
    assert_eq!(preferred.status(), 200);
    assert!(header(&preferred, "content-type").starts_with("text/csv"));
}

/// Follows `next` links from `path`, through the cache, with a hook run
/// after the first page; every page's rows.
async fn follow(
    stack: &Stack,
    path: &str,
    after_first_page: impl FnOnce(),
) -> (Vec<Vec<Value>>, usize) {
    let mut pages = Vec::new();
    let mut next = Some(path.to_owned());
    let mut hook = Some(after_first_page);
    let mut links = 0;
    while let Some(path) = next.take() {
        let response = stack.cache.get(&path).await;
        assert_eq!(response.status(), 200, "{path}");
        let link = header(&response, "link");
        if !link.is_empty() {
            links += 1;
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            next = Some(link[1..link.find('>').unwrap()].to_owned());
        }
        let rows: Vec<Value> = response.json().await.unwrap();
        pages.push(rows);
        if let Some(hook) = hook.take() {
            hook();
        }
        assert!(pages.len() < 100, "the links never end");
    }
    (pages, links)
}

fn keys(pages: &[Vec<Value>]) -> Vec<(String, String)> {
    pages
        .iter()
        .flatten()
        .map(|r| {
            (
                r["time_instant"].as_str().unwrap().to_owned(),
                r["id_entity"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn following_next_links_reads_every_row_once_even_while_rows_are_inserted() {
    let stack = Stack::spawn(&[]).await;
    let everything: Vec<Value> = stack
        .cache
        .get("/air_quality?id_entity=aq_jaen")
        .await
        .json()
        .await
        .unwrap();
    let db = stack.db.name.clone();
    let (pages, links) = follow(&stack, "/air_quality?id_entity=aq_jaen&limit=200", || {
        // One row behind the first page, one ahead of it, one after the end.
        PostgresServer::shared().psql(
            &db,
            "INSERT INTO api.air_quality_measurements (time_instant, id_entity, no2) VALUES \
             ('2016-09-30 23:00', 'aq_jaen', 1), ('2016-11-15 12:30', 'aq_jaen', 2), \
             ('2017-01-01 00:00', 'aq_jaen', 3)",
        );
    })
    .await;
    assert!(pages.iter().all(|p| p.len() <= 200));
    assert_eq!(links, pages.len() - 1, "every page but the last links on");
    let read = keys(&pages);
    let distinct: HashSet<_> = read.iter().cloned().collect();
    assert_eq!(distinct.len(), read.len(), "a row was repeated");
    let mut sorted = read.clone();
    sorted.sort();
    assert_eq!(sorted, read, "pages continue in order");
    for key in keys(std::slice::from_ref(&everything)) {
        assert!(distinct.contains(&key), "{key:?} was skipped");
    }
    assert_eq!(read.len(), everything.len() + 2, "the two rows ahead show");
    assert!(distinct.contains(&("2016-11-15T12:30:00Z".into(), "aq_jaen".into())));
    assert!(distinct.contains(&("2017-01-01T00:00:00Z".into(), "aq_jaen".into())));
}

#[tokio::test]
async fn pages_go_backwards_too_and_keep_their_format() {
    let stack = Stack::spawn(&[]).await;
    let response = stack
        .cache
        .get("/air_quality?id_entity=aq_salvia&order=desc&limit=2&format=ndjson")
        .await;
    let link = header(&response, "link");
    assert!(link.contains("format=ndjson"), "{link}");
    let first = ndjson_objects(response).await;
    let next = &link[1..link.find('>').unwrap()];
    let second = ndjson_objects(stack.cache.get(next).await).await;
    assert_eq!(second.len(), 2);
    assert!(
        second[0]["time_instant"].as_str() < first[1]["time_instant"].as_str(),
        "descending pages continue downwards"
    );
}

#[tokio::test]
async fn a_cursor_that_does_not_belong_to_the_query_is_a_400_naming_it() {
    let stack = Stack::spawn(&[]).await;
    let response = stack
        .cache
        .get("/air_quality?id_entity=aq_jaen&limit=1")
        .await;
    let link = header(&response, "link");
    let cursor = link
        .split("cursor=")
        .nth(1)
        .unwrap()
        .trim_end_matches(">; rel=\"next\"");
    for path in [
        format!("/air_quality?id_entity=aq_salvia&limit=1&cursor={cursor}"),
        format!("/air_quality?limit=1&cursor={cursor}"),
        "/air_quality?limit=1&cursor=not-a-cursor".to_owned(),
    ] {
        let refused = stack.cache.get(&path).await;
        assert_eq!(refused.status(), 400, "{path}");
        let problem: Value = refused.json().await.unwrap();
        assert_eq!(problem["invalid_params"][0]["name"], "cursor", "{path}");
    }
    let last = stack
        .cache
        .get("/air_quality?id_entity=aq_jaen&from=2016-10-01&to=2016-10-01T02:00:00Z&limit=5")
        .await;
    assert!(header(&last, "link").is_empty(), "no next page");
}

#[tokio::test]
async fn the_openapi_document_and_the_docs_page_are_served_through_the_cache() {
    let stack = Stack::spawn(&[]).await;
    let response = stack.cache.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    let document: Value = response.json().await.unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(document["paths"].as_object().unwrap().len(), 6);

    let page = stack.cache.get("/docs").await;
    assert_eq!(
        page.status(),
        200,
        "the docs page's files are embedded (scripts/test.sh runs npm ci in api-rest/docs-ui)"
    );
    assert!(header(&page, "content-security-policy").starts_with("default-src 'self'"));
    let html = page.text().await.unwrap();
    for asset in [
        "/docs/swagger-ui.css",
        "/docs/swagger-ui-bundle.js",
        "/docs/start.js",
    ] {
        assert!(html.contains(asset), "{asset}");
        let file = stack.cache.get(asset).await;
        assert_eq!(file.status(), 200, "{asset}");
        assert!(!file.bytes().await.unwrap().is_empty(), "{asset}");
    }
    assert!(!html.contains("//"), "no asset from another host");
    assert_eq!(stack.cache.get("/docs/nothing.js").await.status(), 404);
}
