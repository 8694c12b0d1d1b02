//! Throwaway PostgreSQL servers and per-test databases.
//!
//! `initdb` runs in a temporary directory (as the `postgres` user when the tests
//! run as root, since PostgreSQL refuses root), the server listens on a free
//! port on 127.0.0.1 and on a Unix socket in that directory. The admin user
//! connects over the socket without a password, as in the official image during
//! initialisation; everyone else connects over TCP with a SCRAM password.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tempfile::TempDir;

use crate::process::{
    Launch, Supervised, find_program, free_port, is_root, user_ids, wait_for_port,
};
use crate::repo_root;

/// The API user's password in test databases.
pub const API_PASSWORD: &str = "api-test-password";
/// The template every test database is copied from (loaded once by the init script).
const TEMPLATE: &str = "air_quality_template";

/// A PostgreSQL server for tests.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    run_as: Option<(u32, u32)>,
    process: Option<Supervised>,
    /// Removes the directory when a dedicated server is dropped.
    _owned_dir: Option<TempDir>,
    shared: bool,
}

impl PostgresServer {
    /// The server this test process shares, with the template database loaded.
    pub fn shared() -> &'static PostgresServer {
        static SHARED: OnceLock<PostgresServer> = OnceLock::new();
        SHARED.get_or_init(|| {
            let server = Self::create(true);
            server.load_template();
            server
        })
    }

    /// A server of the calling test's own (to stop and restart it), removed on drop.
    pub fn start() -> Self {
        Self::create(false)
    }

    fn create(shared: bool) -> Self {
        let bin = bin_dir();
        let run_as = if is_root() {
            Some(
                user_ids("postgres")
                    .expect("running as root needs a 'postgres' system user for initdb"),
            )
        } else {
            None
        };
        let temp = tempfile::Builder::new()
            .prefix("aq-test-pg-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let dir = temp.path().to_owned();
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("cannot hand the data directory to postgres");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .args(["--no-sync", "--encoding=UTF8", "--locale=C"])
            .current_dir(&dir);
        if let Some((uid, gid)) = run_as {
            initdb.uid(uid).gid(gid);
        }
        let output = initdb.output().expect("cannot run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // A shared server lives until the process exits; its watchdog removes the directory.
        let owned_dir = if shared {
            let _kept = temp.keep();
            None
        } else {
            Some(temp)
        };
        let mut server = Self {
            port: free_port(),
            dir,
            bin,
            run_as,
            process: None,
            _owned_dir: owned_dir,
            shared,
        };
        server.start_again();
        server
    }

    /// A streaming replica of this server: `pg_basebackup -R` into a directory
    /// of its own, a second postmaster on a free port (hot standby). Removed on drop.
    pub fn start_replica(&self) -> PostgresServer {
        let temp = tempfile::Builder::new()
            .prefix("aq-test-pg-replica-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let dir = temp.path().to_owned();
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .expect("cannot hand the data directory to postgres");
        }
        let mut backup = Command::new(self.bin.join("pg_basebackup"));
        backup
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres"])
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .current_dir(&dir);
        if let Some((uid, gid)) = self.run_as {
            backup.uid(uid).gid(gid);
        }
        let output = backup.output().expect("cannot run pg_basebackup");
        assert!(
            output.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut replica = Self {
            port: free_port(),
            dir,
            bin: self.bin.clone(),
            run_as: self.run_as,
            process: None,
            _owned_dir: Some(temp),
            shared: false,
        };
        replica.start_again();
        replica
    }

    /// Runs SQL as the admin with psql; returns its unaligned output (every
    /// statement's result, one after the other).
    pub fn psql_value(&self, database: &str, sql: &str) -> String {
        let output = Command::new(self.bin.join("psql"))
            .args([
                "--no-psqlrc",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-U",
                "postgres",
            ])
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-d", database, "-c", sql])
            .output()
            .expect("cannot run psql");
        assert!(
            output.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Starts the server (again) on the same port and data.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "the server is already running");
        let postgres = self.bin.join("postgres");
        let cleanup = self.shared.then_some(self.dir.as_path());
        let log = self.dir.join("postgres.log");
        let args: Vec<String> = [
            "-D",
            &self.dir.join("data").to_string_lossy(),
            "-p",
            &self.port.to_string(),
            "-k",
            &self.dir.to_string_lossy(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let process = Supervised::spawn(&Launch {
            program: &postgres,
            args,
            stop_signal: "INT",
            run_as: self.run_as,
            cleanup,
            log: &log,
        })
        .expect("cannot start postgres");
        // Ready once the socket answers pg_isready, not merely when the port opens.
        let ready = wait_for_port(self.port, Duration::from_secs(30))
            && (0..200).any(|_| {
                let ok = Command::new(self.bin.join("pg_isready"))
                    .args([
                        "-h",
                        &self.dir.to_string_lossy(),
                        "-p",
                        &self.port.to_string(),
                        "-q",
                    ])
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    std::thread::sleep(Duration::from_millis(50));
                }
                ok
            });
        assert!(ready, "postgres did not start:\n{}", process.log_tail());
        self.process = Some(process);
    }

    /// Stops the server (fast shutdown: sessions are disconnected).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Unix socket directory (where the admin connects).
    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// Runs `postgres/init-script.sh` against `database` as the image would: psql
    /// over the Unix socket as POSTGRES_USER, with the given variables.
    pub fn run_init_script(&self, database: &str, vars: &[(&str, &str)]) -> std::process::Output {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new("bash")
            .arg(repo_root().join("postgres/init-script.sh"))
            .env("PATH", path)
            .env("PGHOST", &self.dir)
            .env("PGPORT", self.port.to_string())
            .env("POSTGRES_USER", "postgres")
            .env("POSTGRES_DB", database)
            .envs(vars.iter().copied())
            .output()
            .expect("cannot run bash")
    }

    /// Runs one SQL command as the admin with psql (synchronous, so it can run
    /// while a test's async runtime is busy).
    pub fn psql(&self, database: &str, sql: &str) {
        self.psql_value(database, sql);
    }

    /// Runs the init script on `database` with the test API user and returns it.
    pub fn init_database(&self, database: &str) -> TestDatabase {
        let db = self.database(database);
        let output = self.run_init_script(
            database,
            &[
                ("POSTGRES_API_USER", &db.api_user),
                ("POSTGRES_API_PASSWORD", &db.api_password),
                ("POSTGRES_API_SCHEMA", &db.schema),
            ],
        );
        assert!(
            output.status.success(),
            "init-script.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        db
    }

    /// How to reach `database` on this server as the test API user.
    pub fn database(&self, database: &str) -> TestDatabase {
        TestDatabase {
            port: self.port,
            socket_dir: self.dir.clone(),
            name: database.to_owned(),
            api_user: "api".into(),
            api_password: API_PASSWORD.into(),
            schema: "api".into(),
        }
    }

    fn load_template(&self) {
        self.psql("postgres", &format!("CREATE DATABASE {TEMPLATE}"));
        self.init_database(TEMPLATE);
    }

    /// A new database copied from the template: the CSV loaded, the `api` user granted.
    pub fn create_database(&self) -> TestDatabase {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"),
        );
        self.database(&name)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loaded database and how to reach it.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub port: u16,
    pub socket_dir: PathBuf,
    pub name: String,
    pub api_user: String,
    pub api_password: String,
    pub schema: String,
}

impl TestDatabase {
    /// Connects as the admin over the Unix socket.
    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect_with(
            &PgConnectOptions::new_without_pgpass()
                .socket(&self.socket_dir)
                .port(self.port)
                .username("postgres")
                .database(&self.name),
        )
        .await
        .expect("cannot connect as the admin user")
    }

    /// Connects as the API user over TCP, with its password.
    pub async fn as_api_user(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(
            &PgConnectOptions::new_without_pgpass()
                .host("127.0.0.1")
                .port(self.port)
                .username(&self.api_user)
                .password(&self.api_password)
                .database(&self.name),
        )
        .await
    }

    /// The environment api-rest reads to reach this database.
    pub fn rest_env(&self) -> Vec<(String, String)> {
        vec![
            ("POSTGRES_HOST".into(), "127.0.0.1".into()),
            ("POSTGRES_PORT".into(), self.port.to_string()),
            ("POSTGRES_DB".into(), self.name.clone()),
            ("POSTGRES_API_USER".into(), self.api_user.clone()),
            ("POSTGRES_API_PASSWORD".into(), self.api_password.clone()),
            ("POSTGRES_API_SCHEMA".into(), self.schema.clone()),
        ]
    }

    /// Adds the station `id` (unless it exists), described as aq_jaen is, for
    /// measurements of a station the committed data does not have.
    pub async fn add_station(&self, id: &str) {
        let mut admin = self.admin().await;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {schema}.stations \
             SELECT $1, name, latitude, longitude, elevation_m, area, station_type, timezone \
               FROM {schema}.stations WHERE id_entity = 'aq_jaen' ON CONFLICT DO NOTHING",
            schema = self.schema
        )))
        .bind(id)
        .execute(&mut admin)
        .await
        .expect("add a station");
    }

    /// Replaces the table's rows with `rows` generated rows (for large-data
    /// tests), adding the stations they name.
    pub async fn load_generated(&self, options: datagen::Options) -> u64 {
        let mut stations = Vec::new();
        datagen::write_stations_csv(&mut stations, options.stations).expect("writing to memory");
        let mut csv = Vec::new();
        let rows = datagen::write_csv(&mut csv, options).expect("writing to memory");
        let mut admin = self.admin().await;
        admin
            .execute(AssertSqlSafe(format!(
                "CREATE TEMPORARY TABLE stations_staging (LIKE {}.stations)",
                self.schema
            )))
            .await
            .expect("staging table");
        let mut copy = admin
            .copy_in_raw("COPY stations_staging FROM STDIN WITH (FORMAT csv, HEADER true)")
            .await
            .expect("copy in");
        copy.send(stations).await.expect("copy stations");
        copy.finish().await.expect("copy finish");
        admin
            .execute(AssertSqlSafe(format!(
                "INSERT INTO {}.stations SELECT * FROM stations_staging ON CONFLICT DO NOTHING",
                self.schema
            )))
            .await
            .expect("insert stations");
        admin
            .execute(AssertSqlSafe(format!(
                "TRUNCATE {}.air_quality_measurements",
                self.schema
            )))
            .await
            .expect("truncate");
        let mut copy = admin
            .copy_in_raw(
                format!(
                    "COPY {}.air_quality_measurements FROM STDIN WITH (FORMAT csv, HEADER true)",
                    self.schema
                )
                .as_str(),
            )
            .await
            .expect("copy in");
        copy.send(csv).await.expect("copy data");
        copy.finish().await.expect("copy finish");
        admin
            .execute(AssertSqlSafe(format!(
                "ANALYZE {}.air_quality_measurements",
                self.schema
            )))
            .await
            .expect("analyze");
        rows
    }
}

/// Where the server binaries are: `PG_BIN_DIR`, then the newest
/// `/usr/lib/postgresql/*/bin`, then PATH.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("initdb").is_file())
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    find_program("initdb", &[])
        .and_then(|p| p.parent().map(Path::to_owned))
        .expect("PostgreSQL server binaries not found: install postgresql or set PG_BIN_DIR")
}
