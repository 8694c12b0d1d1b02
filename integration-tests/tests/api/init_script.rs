//! postgres/init-script.sh, run as the postgres image runs it: psql over the
//! Unix socket as POSTGRES_USER, with the variables of environment.env.

use integration_tests::{PostgresServer, repo_root};
use sqlx::Connection;

fn csv_rows() -> i64 {
    let csv = std::fs::read_to_string(repo_root().join("postgres/air_quality.csv")).unwrap();
    csv.lines().count() as i64 - 1
}

async fn count_rows(db: &integration_tests::TestDatabase, schema: &str) -> i64 {
    let mut admin = db.admin().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.air_quality_measurements"
    )))
    .fetch_one(&mut admin)
    .await
    .unwrap()
}

/// A fresh empty database on the shared server.
fn empty_database(server: &PostgresServer, name: &str) -> integration_tests::TestDatabase {
    let name = format!("{name}_{}", std::process::id());
    server.psql("postgres", &format!("CREATE DATABASE {name}"));
    server.database(&name)
}

#[tokio::test]
async fn the_init_script_loads_every_csv_row_with_its_keys_and_indexes() {
    let db = PostgresServer::shared().create_database();
    assert_eq!(count_rows(&db, "api").await, csv_rows());
    let mut admin = db.admin().await;
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'api' AND tablename = 'air_quality_measurements' ORDER BY indexname",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(
        indexes
            .iter()
            .any(|i| i.contains("PRIMARY KEY") || i.contains("(id_entity, time_instant)")),
        "{indexes:?}"
    );
    assert!(
        indexes
            .iter()
            .any(|i| i.contains("(time_instant, id_entity)")),
        "{indexes:?}"
    );
}

#[tokio::test]
async fn running_the_init_script_twice_neither_fails_nor_duplicates_rows() {
    let server = PostgresServer::shared();
    let db = empty_database(server, "twice");
    let vars = [
        ("POSTGRES_API_USER", "api_twice"),
        ("POSTGRES_API_PASSWORD", "pw-twice"),
    ];
    let mut versions = Vec::new();
    for run in 1..=2 {
        let output = server.run_init_script(&db.name, &vars);
        assert!(
            output.status.success(),
            "run {run}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        versions.push(scalar(&db, "SELECT version FROM api.air_quality_data_version").await);
    }
    assert_eq!(count_rows(&db, "api").await, csv_rows());
    assert_eq!(versions[0], versions[1], "the second run changed the data");
    assert_eq!(scalar(&db, "SELECT count(*) FROM api.stations").await, 6);
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM api.air_quality_latest").await,
        6 * 6,
        "a latest reading per station and pollutant"
    );
    assert_eq!(
        scalar(&db, "SELECT count(*) FROM api.air_quality_spans").await,
        6,
        "a span per station"
    );
}

async fn scalar(db: &integration_tests::TestDatabase, sql: &str) -> i64 {
    let mut admin = db.admin().await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_database_made_by_the_earlier_script_is_upgraded_in_place() {
    let server = PostgresServer::shared();
    let db = empty_database(server, "upgrade");
    // The schema before stations: no foreign key, a primary key that covers nothing.
    server.psql(
        &db.name,
        "CREATE SCHEMA api; \
         CREATE TABLE api.air_quality_measurements (time_instant timestamp NOT NULL, \
           id_entity varchar(50) NOT NULL, so2 double precision, no2 double precision, \
           co double precision, o3 double precision, pm10 double precision, pm2_5 double precision, \
           CONSTRAINT air_quality_measurements_pkey PRIMARY KEY (id_entity, time_instant)); \
         INSERT INTO api.air_quality_measurements (time_instant, id_entity, no2) \
           VALUES ('2017-01-01 00:00', 'aq_jaen', 12.5)",
    );
    let output = server.run_init_script(
        &db.name,
        &[
            ("POSTGRES_API_USER", "api_upgrade"),
            ("POSTGRES_API_PASSWORD", "pw"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count_rows(&db, "api").await, csv_rows() + 1, "nothing lost");
    let partitioned = scalar(
        &db,
        "SELECT count(*) FROM pg_partitioned_table WHERE partrelid = 'api.air_quality_measurements'::regclass",
    )
    .await;
    assert_eq!(partitioned, 1, "the old table became a partitioned one");
    let old_row = scalar(
        &db,
        "SELECT count(*) FROM api.air_quality_measurements_y2017m01 WHERE id_entity = 'aq_jaen'",
    )
    .await;
    assert_eq!(old_row, 1, "the old row is in its month's partition");
    let covering = scalar(
        &db,
        "SELECT (indnatts - indnkeyatts)::bigint FROM pg_index WHERE indexrelid = 'api.air_quality_measurements_pkey'::regclass",
    )
    .await;
    assert_eq!(covering, 6, "the primary key covers the six pollutants");
    let foreign_keys = scalar(
        &db,
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'api.air_quality_measurements'::regclass AND contype = 'f'",
    )
    .await;
    assert_eq!(foreign_keys, 1);
    let latest_no2 = scalar(
        &db,
        "SELECT (value * 10)::bigint FROM api.air_quality_latest WHERE id_entity = 'aq_jaen' AND pollutant = 'no2'",
    )
    .await;
    assert_eq!(latest_no2, 125, "the old row is the latest");
}

#[tokio::test]
async fn measurements_of_a_station_missing_from_the_stations_file_stop_the_script_naming_it() {
    let server = PostgresServer::shared();
    let db = empty_database(server, "orphans");
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("air_quality.csv");
    std::fs::write(
        &csv,
        "TimeInstant,id_entity,so2,no2,co,o3,pm10,pm2_5\n2016-10-01 00:00:00.000,aq_ghost,1,2,0.3,4,5,6\n",
    )
    .unwrap();
    let output = server.run_init_script(
        &db.name,
        &[
            ("POSTGRES_API_USER", "api_orphans"),
            ("POSTGRES_API_PASSWORD", "pw"),
            ("AIR_QUALITY_CSV", csv.to_str().unwrap()),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("aq_ghost"), "{stderr}");
}

#[tokio::test]
async fn an_empty_api_password_stops_the_init_script_with_a_clear_message() {
    let server = PostgresServer::shared();
    let db = empty_database(server, "nopassword");
    let output = server.run_init_script(
        &db.name,
        &[
            ("POSTGRES_API_PASSWORD", ""),
            ("POSTGRES_API_USER", "api_nopw"),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("POSTGRES_API_PASSWORD is empty"),
        "{stderr}"
    );
    let mut admin = db.admin().await;
    let schemas: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'api'")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(schemas, 0, "nothing is created before the check");
}

#[tokio::test]
async fn the_api_user_can_read_the_table_and_nothing_else() {
    let db = PostgresServer::shared().create_database();
    let mut api = db
        .as_api_user()
        .await
        .expect("the API user logs in with its password");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM api.air_quality_measurements")
        .fetch_one(&mut api)
        .await
        .unwrap();
    assert_eq!(rows, csv_rows());
    for table in [
        "stations",
        "air_quality_latest",
        "air_quality_spans",
        "air_quality_data_version",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM api.{table} LIMIT 1"
        )))
        .fetch_all(&mut api)
        .await
        .unwrap_or_else(|e| panic!("{table}: {e}"));
    }

    // Its sessions are read-only by default...
    let error = sqlx::query(
        "INSERT INTO api.air_quality_measurements (time_instant, id_entity) VALUES (now(), 'x')",
    )
    .execute(&mut api)
    .await
    .unwrap_err();
    assert!(error.to_string().contains("read-only"), "{error}");
    // ...and even in a read-write transaction it has no INSERT privilege.
    let mut tx = api.begin().await.unwrap();
    sqlx::query("SET TRANSACTION READ WRITE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let error = sqlx::query(
        "INSERT INTO api.air_quality_measurements (time_instant, id_entity) VALUES (now(), 'x')",
    )
    .execute(&mut *tx)
    .await
    .unwrap_err();
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.to_string());
    assert_eq!(
        code.as_deref(),
        Some("42501"),
        "permission denied expected, got {error}"
    );
    tx.rollback().await.unwrap();

    let mut tx = api.begin().await.unwrap();
    sqlx::query("SET TRANSACTION READ WRITE")
        .execute(&mut *tx)
        .await
        .unwrap();
    let error = sqlx::query("CREATE TABLE api.intruder (x int)")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("permission denied"), "{error}");
}

#[tokio::test]
async fn the_api_user_cannot_log_in_with_a_wrong_password() {
    let mut db = PostgresServer::shared().create_database();
    db.api_password = "wrong".into();
    let error = db.as_api_user().await.unwrap_err();
    assert!(
        error.to_string().contains("password authentication failed"),
        "{error}"
    );
}

#[tokio::test]
async fn the_image_can_source_the_script_and_its_entrypoint_carries_on() {
    // The postgres image sources a non-executable *.sh (a ConfigMap mount) in its
    // own `set -Eeo pipefail` shell: the script must not leak options or exit it.
    let server = PostgresServer::shared();
    let db = empty_database(server, "sourced");
    let script = repo_root().join("postgres/init-script.sh");
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -Eeo pipefail; source "$1"; case $- in *u*) echo "nounset leaked";; esac; echo "entrypoint continues""#)
        .arg("entrypoint")
        .arg(&script)
        .env("PATH", format!("{}:{}", server.bin_dir().display(), std::env::var("PATH").unwrap()))
        .env("PGHOST", server.socket_dir())
        .env("PGPORT", server.port().to_string())
        .env("POSTGRES_USER", "postgres")
        .env("POSTGRES_DB", &db.name)
        .env("POSTGRES_API_USER", "api_sourced")
        .env("POSTGRES_API_PASSWORD", "pw-sourced")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "entrypoint continues");
    assert_eq!(count_rows(&db, "api").await, csv_rows());

    // And a failure stops the entrypoint, as `set -e` demands.
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"set -Eeo pipefail; source "$1"; echo "should not get here""#)
        .arg("entrypoint")
        .arg(&script)
        .env("POSTGRES_API_PASSWORD", "")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(!String::from_utf8_lossy(&output.stdout).contains("should not get here"));
}

#[tokio::test]
async fn a_custom_schema_and_user_are_honoured() {
    let server = PostgresServer::shared();
    let db = empty_database(server, "custom");
    let output = server.run_init_script(
        &db.name,
        &[
            ("POSTGRES_API_SCHEMA", "measurements"),
            ("POSTGRES_API_USER", "reader"),
            ("POSTGRES_API_PASSWORD", "pw-reader"),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(count_rows(&db, "measurements").await, csv_rows());
    let db = integration_tests::TestDatabase {
        api_user: "reader".into(),
        api_password: "pw-reader".into(),
        schema: "measurements".into(),
        ..db
    };
    let rest = integration_tests::apps::spawn_rest(db.rest_env()).await;
    let rows: Vec<serde_json::Value> = rest.get("/air_quality?limit=3").await.json().await.unwrap();
    assert_eq!(rows.len(), 3);
}

#[tokio::test]
async fn the_api_password_never_appears_on_a_command_line_and_any_character_works() {
    let server = PostgresServer::shared();
    let db = empty_database(server, "argv");
    // A psql that writes down its arguments, then runs the real one.
    let shim = tempfile::tempdir().unwrap();
    let args_log = shim.path().join("args.log");
    let script = format!(
        "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        args_log.display(),
        server.bin_dir().join("psql").display()
    );
    let shim_psql = shim.path().join("psql");
    std::fs::write(&shim_psql, script).unwrap();
    std::fs::set_permissions(
        &shim_psql,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let password = r#"it's a "pa$$" $(word) \ with; -- more"#;
    let path = format!(
        "{}:{}:{}",
        shim.path().display(),
        server.bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // Its own API user: roles are the whole server's, and other tests log in as `api`.
    let output = server.run_init_script(
        &db.name,
        &[
            ("POSTGRES_API_USER", "argv_reader"),
            ("POSTGRES_API_PASSWORD", password),
            ("PATH", &path),
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let args = std::fs::read_to_string(&args_log).unwrap();
    assert!(args.contains("--username"), "the shim ran: {args}");
    assert!(
        !args.contains("pa$$"),
        "the password was on psql's command line: {args}"
    );
    let db = integration_tests::TestDatabase {
        api_user: "argv_reader".into(),
        api_password: password.to_owned(),
        ..db
    };
    db.as_api_user()
        .await
        .expect("the API user logs in with exactly that password");
}
