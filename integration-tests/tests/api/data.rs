//! The data users expect, through api-cache: stations with their places,
//! latest readings, aggregates with coverage, and the Air Quality Index.

use std::time::{Duration, Instant};

use integration_tests::apps::Stack;
use integration_tests::{PostgresServer, committed_rows, eventually};
use serde_json::{Value, json};
use time::macros::datetime;

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
}

/// GET through the cache; the status must be `status`; the JSON body.
async fn json_of(stack: &Stack, path: &str, status: u16) -> Value {
    let response = stack.cache.get(path).await;
    assert_eq!(response.status(), status, "{path}");
    response.json().await.unwrap()
}

async fn with_accept(stack: &Stack, path: &str, accept: &str) -> reqwest::Response {
    stack
        .cache
        .client()
        .get(stack.cache.url(path))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
}

/// The names of the parameters a 400 problem lists.
fn invalid_names(problem: &Value) -> Vec<String> {
    problem["invalid_params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn stations_are_listed_with_their_places_and_the_span_of_their_data() {
    let stack = Stack::spawn(&[]).await;
    let stations = json_of(&stack, "/stations", 200).await;
    let stations = stations.as_array().unwrap();
    assert_eq!(stations.len(), 6);
    let jaen = stations
        .iter()
        .find(|s| s["id_entity"] == "aq_jaen")
        .unwrap();
    assert_eq!(jaen["timezone"], "Europe/Madrid");
    assert_eq!(jaen["station_type"], "background");
    assert!(jaen["latitude"].as_f64().unwrap() > 37.0);
    let rows = committed_rows();
    let jaen_times: Vec<_> = rows
        .iter()
        .filter(|r| r.1 == "aq_jaen")
        .map(|r| r.0)
        .collect();
    let show = |t: time::PrimitiveDateTime| {
        t.assume_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    assert_eq!(jaen["first_measurement"], show(jaen_times[0]));
    assert_eq!(jaen["last_measurement"], show(*jaen_times.last().unwrap()));

    let response = stack.cache.get("/stations").await;
    assert_eq!(header(&response, "x-cache"), "HIT");
    assert!(header(&response, "vary").contains("Accept"));
    assert_eq!(header(&response, "content-type"), "application/json");
}

#[tokio::test]
async fn stations_answer_geojson_by_parameter_or_by_accept() {
    let stack = Stack::spawn(&[]).await;
    let by_accept = with_accept(&stack, "/stations", "application/geo+json").await;
    assert_eq!(header(&by_accept, "content-type"), "application/geo+json");
    let collection: Value = by_accept.json().await.unwrap();
    assert_eq!(collection["type"], "FeatureCollection");
    let feature = &collection["features"][0];
    assert_eq!(feature["type"], "Feature");
    assert_eq!(feature["geometry"]["type"], "Point");
    let [lon, lat] = [
        &feature["geometry"]["coordinates"][0],
        &feature["geometry"]["coordinates"][1],
    ];
    assert!(
        lon.as_f64().unwrap() < 0.0 && lat.as_f64().unwrap() > 30.0,
        "lon, lat order"
    );
    assert!(feature["properties"].get("latitude").is_none());
    // The JSON variant is still the JSON one: variants are apart in the cache.
    let plain = json_of(&stack, "/stations", 200).await;
    assert!(plain.is_array());
    let by_parameter = json_of(&stack, "/stations?format=geojson", 200).await;
    assert_eq!(by_parameter["features"].as_array().unwrap().len(), 6);
    let one = json_of(&stack, "/stations/aq_nevero?format=geojson", 200).await;
    assert_eq!(one["type"], "Feature");
    assert_eq!(one["properties"]["elevation_m"], 2100.0);
}

#[tokio::test]
async fn stations_are_picked_by_box_or_by_distance_and_bad_areas_are_400s() {
    let stack = Stack::spawn(&[]).await;
    let ids = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id_entity"].as_str().unwrap().to_owned())
            .collect()
    };
    // Granada's city centre: not Jaén (100 km north), not Sierra Nevada.
    let city = json_of(&stack, "/stations?bbox=-3.62,37.16,-3.58,37.20", 200).await;
    assert_eq!(ids(&city), ["aq_cartuja", "aq_salvia", "aq_tomillo"]);
    let near = json_of(&stack, "/stations?near=37.1773,-3.5986&radius_km=2", 200).await;
    assert_eq!(ids(&near)[0], "aq_salvia", "nearest first");
    assert!(near[0]["distance_km"].as_f64().unwrap() < 0.2);
    assert!(
        near.as_array()
            .unwrap()
            .iter()
            .all(|s| s["distance_km"].as_f64().unwrap() <= 2.0)
    );
    let sea = json_of(&stack, "/stations?bbox=-10,40,-9,41", 200).await;
    assert_eq!(sea, json!([]), "a valid query that matches nothing");

    for (query, bad) in [
        ("bbox=-3.5,37,-3.6", "bbox"),
        ("bbox=-3.6,38,-3.5,37", "bbox"),
        ("near=37.17,-3.6", "radius_km"),
        ("near=37.17,-3.6&radius_km=-1", "radius_km"),
        ("format=xml", "format"),
        ("bbx=1,2,3,4", "bbx"),
    ] {
        let problem = json_of(&stack, &format!("/stations?{query}"), 400).await;
        assert_eq!(invalid_names(&problem), [bad], "{query}");
    }
}

#[tokio::test]
async fn one_station_by_its_id_or_a_404_problem() {
    let stack = Stack::spawn(&[]).await;
    let jaen = json_of(&stack, "/stations/aq_jaen", 200).await;
    assert_eq!(jaen["name"], "Jaén");
    let response = stack.cache.get("/stations/aq_atlantis").await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["unknown_stations"], json!(["aq_atlantis"]));
    assert_eq!(stack.cache.get("/stations/a%20b").await.status(), 404);
}

#[tokio::test]
async fn the_latest_reading_of_each_pollutant_keeps_its_own_time() {
    let stack = Stack::spawn(&[]).await;
    let before = json_of(&stack, "/air_quality/latest?id_entity=aq_jaen", 200).await;
    let last = committed_rows()
        .into_iter()
        .rfind(|r| r.1 == "aq_jaen")
        .unwrap();
    assert_eq!(before[0]["readings"]["no2"]["value"], last.2[1].unwrap());
    assert_eq!(before[0]["readings"]["co"]["unit"], "mg/m³");

    // A later row with NO2 only: NO2 moves on, the rest keep their times.
    let mut admin = stack.db.admin().await;
    sqlx::query("INSERT INTO api.air_quality_measurements (time_instant, id_entity, no2) VALUES ('2016-12-01 03:00', 'aq_jaen', 77.5)")
        .execute(&mut admin)
        .await
        .unwrap();
    let after = eventually(Duration::from_secs(5), || async {
        let latest = json_of(&stack, "/air_quality/latest?id_entity=aq_jaen", 200).await;
        latest[0]["readings"]["no2"]["value"] == 77.5
    })
    .await;
    assert!(after, "the new NO2 reading never showed");
    let latest = json_of(&stack, "/air_quality/latest?id_entity=aq_jaen", 200).await;
    let readings = &latest[0]["readings"];
    assert_eq!(readings["no2"]["time_instant"], "2016-12-01T03:00:00Z");
    assert_eq!(readings["so2"], before[0]["readings"]["so2"]);

    let geo = json_of(&stack, "/air_quality/latest?format=geojson", 200).await;
    assert_eq!(geo["features"].as_array().unwrap().len(), 6);
    assert!(geo["features"][0]["properties"]["readings"].is_object());
    assert_eq!(
        stack
            .cache
            .get("/air_quality/latest?id_entity=aq_nowhere")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn an_insert_shows_in_the_latest_readings_through_a_warm_cache_at_once() {
    let stack = Stack::spawn_with(&[("RESPONSE_MAX_AGE_SECONDS", "3600")], &[]).await;
    let path = "/air_quality/latest?id_entity=aq_salvia";
    json_of(&stack, path, 200).await;
    assert_eq!(header(&stack.cache.get(path).await, "x-cache"), "HIT");
    let server = PostgresServer::shared();
    let inserted = Instant::now();
    server.psql(
        &stack.db.name,
        "INSERT INTO api.air_quality_measurements (time_instant, id_entity, o3) VALUES ('2016-12-01 01:00', 'aq_salvia', 42.25)",
    );
    let visible = eventually(Duration::from_secs(10), || async {
        json_of(&stack, path, 200).await[0]["readings"]["o3"]["value"] == 42.25
    })
    .await;
    assert!(visible, "the insert never showed through the cache");
    println!(
        "insert visible in /air_quality/latest through a warm cache after {} ms",
        inserted.elapsed().as_millis()
    );
}

#[tokio::test]
async fn daily_aggregates_follow_the_stations_clock_through_the_dst_change() {
    let stack = Stack::spawn(&[]).await;
    let path =
        "/air_quality/aggregates?interval=day&id_entity=aq_jaen&from=2016-10-29&to=2016-11-01";
    let buckets = json_of(&stack, path, 200).await;
    let buckets = buckets.as_array().unwrap();
    let starts: Vec<&str> = buckets
        .iter()
        .map(|b| b["start"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        [
            "2016-10-29T00:00:00+02:00",
            "2016-10-30T00:00:00+02:00",
            "2016-10-31T00:00:00+01:00",
            "2016-11-01T00:00:00+01:00"
        ]
    );
    // from = 2016-10-29T00:00Z is 02:00 in Madrid: the first day is partial,
    // and so is the last (to = 2016-11-01T00:00Z is 01:00 on the 1st).
    let complete: Vec<bool> = buckets
        .iter()
        .map(|b| b["complete"].as_bool().unwrap())
        .collect();
    assert_eq!(complete, [false, true, true, false]);
    let dst_day = &buckets[1];
    assert_eq!(dst_day["expected"], 25, "the day the clocks went back");
    assert_eq!(buckets[2]["expected"], 24);
    assert_eq!(dst_day["tz"], "Europe/Madrid");

    // The same figures from the CSV: Madrid's 30th is 22:00Z on the 29th to 23:00Z on the 30th.
    let day: Vec<_> = committed_rows()
        .into_iter()
        .filter(|r| {
            r.1 == "aq_jaen"
                && r.0 >= datetime!(2016-10-29 22:00)
                && r.0 < datetime!(2016-10-30 23:00)
        })
        .collect();
    assert_eq!(dst_day["count"], day.len());
    let no2: Vec<f64> = day.iter().filter_map(|r| r.2[1]).collect();
    let mean = no2.iter().sum::<f64>() / no2.len() as f64;
    let reported = &dst_day["pollutants"]["no2"];
    assert!(
        (reported["mean"].as_f64().unwrap() - mean).abs() < 1e-4,
        "{reported} vs {mean}"
    );
    assert_eq!(reported["count"], no2.len());
    let max = no2.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(reported["max"], max);
    assert_eq!(
        dst_day["coverage"].as_f64().unwrap(),
        ((day.len() as f64 / 25.0) * 10_000.0).round() / 10_000.0
    );

    // In UTC every day has 24 hours.
    let utc = json_of(&stack, &format!("{path}&tz=UTC"), 200).await;
    assert!(utc.as_array().unwrap().iter().all(|b| b["expected"] == 24));
}

#[tokio::test]
async fn aggregates_refuse_bad_parameters_and_unknown_stations() {
    let stack = Stack::spawn(&[]).await;
    for (query, bad) in [
        ("from=2016-10-01", vec!["interval"]),
        ("interval=fortnight", vec!["interval"]),
        ("interval=day&tz=Mars/Olympus_Mons", vec!["tz"]),
        (
            "interval=day&from=2016-10-02&to=2016-10-01",
            vec!["from", "to"],
        ),
        ("interval=day&limit=5", vec!["limit"]),
    ] {
        let problem = json_of(&stack, &format!("/air_quality/aggregates?{query}"), 400).await;
        assert_eq!(invalid_names(&problem), bad, "{query}");
    }
    assert_eq!(
        stack
            .cache
            .get("/air_quality/aggregates?interval=day&id_entity=aq_nowhere")
            .await
            .status(),
        404
    );
    let none = json_of(
        &stack,
        "/air_quality/aggregates?interval=month&from=2020-01-01&to=2021-01-01",
        200,
    )
    .await;
    assert_eq!(none, json!([]), "no data in the range: an empty collection");
    // The data ends at 2016-11-30T23:00Z, which is 1 December in Madrid: a
    // third month per station, of one reading, incomplete.
    let months = json_of(
        &stack,
        "/air_quality/aggregates?interval=month&id_entity=aq_jaen",
        200,
    )
    .await;
    let months = months.as_array().unwrap();
    assert_eq!(months.len(), 3);
    assert_eq!(months[2]["start"], "2016-12-01T00:00:00+01:00");
    assert_eq!(
        (months[2]["count"].clone(), months[2]["complete"].clone()),
        (json!(1), json!(false))
    );
}

#[tokio::test]
async fn the_aqi_follows_each_standard_and_names_the_dominant_pollutant() {
    let stack = Stack::spawn(&[]).await;
    let eaqi = json_of(&stack, "/air_quality/aqi", 200).await;
    let eaqi = eaqi.as_array().unwrap();
    assert_eq!(eaqi.len(), 6);
    for station in eaqi {
        assert_eq!(station["standard"], "eaqi");
        let index = station["index"].as_u64().unwrap();
        assert!((1..=6).contains(&index), "{station}");
        let dominant = station["dominant"].as_str().unwrap();
        assert_eq!(station["pollutants"][dominant]["sub_index"], index);
        assert!(
            station["category"]["color"]
                .as_str()
                .unwrap()
                .starts_with('#')
        );
        assert_eq!(station["pollutants"]["pm10"]["averaging"], "24h");
        assert!(station["pollutants"].get("co").is_none());
    }
    let epa = json_of(
        &stack,
        "/air_quality/aqi?standard=us-epa&id_entity=aq_salvia",
        200,
    )
    .await;
    let salvia = &epa[0];
    assert_eq!(salvia["standard_version"], "2024-05-06");
    assert_eq!(salvia["pollutants"]["pm2_5"]["averaging"], "nowcast");
    assert_eq!(salvia["pollutants"]["o3"]["unit"], "ppm");
    let worst = salvia["pollutants"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["sub_index"].as_u64().unwrap())
        .max();
    assert_eq!(salvia["index"].as_u64(), worst);
    assert_eq!(salvia["time_instant"], "2016-11-30T23:00:00Z");

    let problem = json_of(&stack, "/air_quality/aqi?standard=caqi", 400).await;
    assert_eq!(invalid_names(&problem), ["standard"]);
    let geo = json_of(
        &stack,
        "/air_quality/aqi?format=geojson&bbox=-3.62,37.16,-3.58,37.20",
        200,
    )
    .await;
    assert_eq!(geo["features"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn new_answers_carry_validators_data_version_and_station_keys_and_304_when_unchanged() {
    let stack = Stack::spawn(&[]).await;
    for path in [
        "/stations",
        "/stations/aq_jaen",
        "/air_quality/latest?id_entity=aq_jaen",
        "/air_quality/aggregates?interval=month&id_entity=aq_jaen",
        "/air_quality/aqi?id_entity=aq_jaen",
    ] {
        let direct = stack.rest.get(path).await;
        assert_eq!(direct.status(), 200, "{path}");
        for name in ["etag", "last-modified", "cache-control", "data-version"] {
            assert!(!header(&direct, name).is_empty(), "{path}: {name}");
        }
        let keys = header(&direct, "surrogate-key");
        assert!(keys.split(' ').any(|k| k == "aq_jaen"), "{path}: {keys}");
        let etag = header(&direct, "etag");
        let again = stack
            .rest
            .client()
            .get(stack.rest.url(path))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }
}

#[tokio::test]
async fn purging_a_station_purges_its_latest_aggregates_and_aqi_answers() {
    let stack = Stack::spawn(&[("CACHE_PURGE_TOKEN", "purge-secret")]).await;
    let paths = [
        "/air_quality/latest?id_entity=aq_jaen",
        "/air_quality/aggregates?interval=day&id_entity=aq_jaen",
        "/air_quality/aqi?id_entity=aq_jaen",
        "/stations/aq_jaen",
    ];
    let other = "/air_quality/latest?id_entity=aq_salvia";
    for path in paths.iter().chain([&other]) {
        stack.cache.get(path).await.bytes().await.unwrap();
        assert_eq!(
            header(&stack.cache.get(path).await, "x-cache"),
            "HIT",
            "{path}"
        );
    }
    let purged = stack
        .cache
        .client()
        .post(stack.cache.admin_url("/_cache/purge"))
        .bearer_auth("purge-secret")
        .json(&json!({"surrogate_key": "aq_jaen"}))
        .send()
        .await
        .unwrap();
    assert_eq!(purged.status(), 200);
    for path in paths {
        assert_eq!(
            header(&stack.cache.get(path).await, "x-cache"),
            "MISS",
            "{path}"
        );
    }
    assert_eq!(header(&stack.cache.get(other).await, "x-cache"), "HIT");
}
