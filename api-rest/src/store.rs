//! PostgreSQL access: the pools, the measurement query, the readiness probe.
//!
//! The pools connect lazily, so api-rest starts (and reports not-ready) while the
//! database is down, and reconnects by itself when it returns: every connection
//! is checked before use and broken ones are replaced.
//!
//! With a read replica (`POSTGRES_READ_HOST`), reads go there as long as it
//! has replayed the newest data version announced (by the primary's
//! `NOTIFY`): an answer is never older than a change api-cache was told
//! about. A replica behind is waited for up to `POSTGRES_READ_MAX_WAIT_MS`,
//! then the primary answers; a replica that fails is left alone for
//! `REPLICA_REST` and the primary answers. `Snapshot::from` says which.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::{Stream, TryStreamExt};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use time::OffsetDateTime;

use crate::config::Config;
use crate::measurement::{COLUMNS, Measurement};
use crate::query::{MeasurementQuery, Order, RowKey};
use service_kit::ConfigError;

/// How long a replica that failed is not asked again.
const REPLICA_REST: Duration = Duration::from_secs(5);
/// How often a read waiting for the replica to catch up looks again.
const REPLICA_POLL: Duration = Duration::from_millis(10);
/// How long a read waits for a replica connection before asking the primary.
const REPLICA_ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct Store {
    /// The primary: LISTEN, the data version, and reads without a replica.
    pool: PgPool,
    replica: Option<Replica>,
    /// Requests waiting for a connection now.
    waiting: Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
struct Replica {
    pool: PgPool,
    max_wait: Duration,
    /// Until when it is left alone after a failure.
    resting_until: Arc<Mutex<Option<Instant>>>,
}

/// Where a snapshot was read (`api_rest_reads_total{from}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// The primary; no replica is configured.
    Primary,
    /// The replica, at once.
    Replica,
    /// The replica, after waiting for it to replay the announced version.
    ReplicaAfterWait,
    /// The primary: the replica stayed behind the announced version.
    PrimaryReplicaBehind,
    /// The primary: the replica failed, or is resting after a failure.
    PrimaryReplicaDown,
}

impl ReadFrom {
    pub const ALL: [Self; 5] = [
        Self::Primary,
        Self::Replica,
        Self::ReplicaAfterWait,
        Self::PrimaryReplicaBehind,
        Self::PrimaryReplicaDown,
    ];

    pub fn is_replica(self) -> bool {
        matches!(self, Self::Replica | Self::ReplicaAfterWait)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
            Self::ReplicaAfterWait => "replica_after_wait",
            Self::PrimaryReplicaBehind => "primary_replica_behind",
            Self::PrimaryReplicaDown => "primary_replica_down",
        }
    }
}

/// What asking the replica gave.
enum ReplicaRead {
    Read(Snapshot),
    Behind,
    Down,
}

/// The pool's state, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub open: u32,
    pub idle: u32,
    pub max: u32,
    pub waiting: u64,
}

/// Counts a request as waiting for a connection while it lives.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn enter(counter: &'a AtomicU64) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Store {
    /// Builds the pools without connecting.
    pub fn connect_lazy(config: &Config) -> Result<Self, ConfigError> {
        let primary = connect_options(config, &config.postgres_host, config.postgres_port)?;
        let pool = pool_options(config, config.acquire_timeout()).connect_lazy_with(primary);
        let replica = match config.read_replica() {
            None => None,
            Some((host, port)) => Some(Replica {
                pool: pool_options(
                    config,
                    REPLICA_ACQUIRE_TIMEOUT.min(config.acquire_timeout()),
                )
                .connect_lazy_with(connect_options(config, host, port)?),
                max_wait: config.read_max_wait(),
                resting_until: Arc::new(Mutex::new(None)),
            }),
        };
        Ok(Self {
            pool,
            replica,
            waiting: Arc::new(AtomicU64::new(0)),
        })
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// Opens a consistent, read-only view of the data and reads its version:
    /// on the replica if it has `announced` (the newest version announced),
    /// else on the primary. The rows read through it belong to that version.
    /// `primary_only`: a read again after the replica failed mid-read.
    pub async fn snapshot(
        &self,
        announced: Option<i64>,
        primary_only: bool,
    ) -> Result<Snapshot, sqlx::Error> {
        let from = match &self.replica {
            None => ReadFrom::Primary,
            Some(_) if primary_only => ReadFrom::PrimaryReplicaDown,
            Some(replica) => match replica.snapshot(announced, &self.waiting).await {
                ReplicaRead::Read(snapshot) => return Ok(snapshot),
                ReplicaRead::Behind => ReadFrom::PrimaryReplicaBehind,
                ReplicaRead::Down => ReadFrom::PrimaryReplicaDown,
            },
        };
        open_snapshot(&self.pool, &self.waiting, from).await
    }

    /// The pool, for the data-change listener's connection.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The data version now.
    pub async fn current_version(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT version FROM air_quality_data_version")
            .fetch_one(&self.pool)
            .await
    }

    /// Succeeds when the database answers a read of the table within `timeout`:
    /// that proves the server, the credentials, the schema and the grant.
    pub async fn ping(&self, timeout: Duration) -> Result<(), sqlx::Error> {
        let probe = sqlx::query("SELECT 1 FROM air_quality_measurements LIMIT 1")
            .fetch_optional(&self.pool);
        match tokio::time::timeout(timeout, probe).await {
            Ok(result) => result.map(drop),
            Err(_elapsed) => Err(sqlx::Error::PoolTimedOut),
        }
    }

    /// Closes every connection; waits for checked-out ones to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl Replica {
    /// A snapshot at `announced` or newer, waiting up to `max_wait` for the
    /// replica to replay it.
    async fn snapshot(&self, announced: Option<i64>, waiting: &AtomicU64) -> ReplicaRead {
        if self.resting() {
            return ReplicaRead::Down;
        }
        let deadline = Instant::now() + self.max_wait;
        let mut from = ReadFrom::Replica;
        loop {
            let snapshot = match open_snapshot(&self.pool, waiting, from).await {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    tracing::warn!(%error, "the read replica failed; reading from the primary");
                    self.rest();
                    return ReplicaRead::Down;
                }
            };
            if announced.is_none_or(|version| snapshot.version >= version) {
                return ReplicaRead::Read(snapshot);
            }
            // Rolled back on drop; a later transaction sees what was replayed since.
            drop(snapshot);
            if Instant::now() + REPLICA_POLL > deadline {
                return ReplicaRead::Behind;
            }
            tokio::time::sleep(REPLICA_POLL).await;
            from = ReadFrom::ReplicaAfterWait;
        }
    }

    fn resting(&self) -> bool {
        let mut until = self
            .resting_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *until {
            Some(at) if Instant::now() < at => true,
            Some(_) => {
                *until = None;
                false
            }
            None => false,
        }
    }

    fn rest(&self) {
        *self
            .resting_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + REPLICA_REST);
    }
}

/// A pool that connects lazily, checks each connection before use, and
/// waits `acquire_timeout` for a free one.
fn pool_options(config: &Config, acquire_timeout: Duration) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(config.postgres_pool_max_connections)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .test_before_acquire(true)
}

/// How api-rest logs in to `host:port`.
fn connect_options(
    config: &Config,
    host: &str,
    port: u16,
) -> Result<PgConnectOptions, ConfigError> {
    let statement_timeout = format!("{}s", config.postgres_statement_timeout_seconds);
    let mut options = PgConnectOptions::new_without_pgpass()
        .host(host)
        .port(port)
        .database(&config.postgres_db)
        .username(&config.postgres_api_user)
        .password(
            config
                .postgres_api_password
                .as_ref()
                .map(ExposeSecret::expose_secret)
                .unwrap_or_default(),
        )
        .ssl_mode(config.ssl_mode()?)
        .application_name("api-rest")
        // The table is addressed unqualified; the schema is configuration.
        // JIT off: every query here is a few index probes or one range,
        // and compiling them cost 80 ms on a 10-million-row table (the
        // planner's cost estimate crosses jit_above_cost).
        .options([
            ("search_path", config.postgres_api_schema.as_str()),
            ("statement_timeout", statement_timeout.as_str()),
            ("jit", "off"),
        ]);
    if let Some(root_cert) = &config.postgres_sslrootcert {
        options = options.ssl_root_cert(root_cert);
    }
    Ok(options)
}

/// A read-only, repeatable-read transaction on `pool` and its data version.
async fn open_snapshot(
    pool: &PgPool,
    waiting: &AtomicU64,
    from: ReadFrom,
) -> Result<Snapshot, sqlx::Error> {
    let counted = Waiting::enter(waiting);
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await?;
    drop(counted);
    let (version, changed_at): (i64, OffsetDateTime) =
        sqlx::query_as("SELECT version, changed_at FROM air_quality_data_version")
            .fetch_one(&mut *tx)
            .await?;
    Ok(Snapshot {
        tx,
        version,
        changed_at: SystemTime::from(changed_at),
        from,
    })
}

/// A read-only transaction on one version of the data.
#[derive(Debug)]
pub struct Snapshot {
    tx: Transaction<'static, Postgres>,
    /// Bumped by a trigger on every statement that changes the table.
    pub version: i64,
    /// When that change was committed.
    pub changed_at: SystemTime,
    pub from: ReadFrom,
}

impl Snapshot {
    /// The transaction, for the queries of each endpoint's module.
    pub(crate) fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx
    }

    /// Ends the read-only transaction (see [`end_read_only`]).
    pub async fn finish(self) {
        end_read_only(self.tx).await;
    }

    /// Every station id, in order.
    pub async fn station_ids(&mut self) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT id_entity FROM stations ORDER BY id_entity")
            .fetch_all(&mut *self.tx)
            .await
    }

    /// Of `ids`, those no station has, in order.
    pub async fn unknown_stations(&mut self, ids: &[String]) -> Result<Vec<String>, sqlx::Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "SELECT DISTINCT id FROM unnest($1::text[]) AS t (id) \
              WHERE NOT EXISTS (SELECT FROM stations s WHERE s.id_entity = t.id) ORDER BY id",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await
    }

    /// The key of the last row of the page `query` asks for, when more rows
    /// follow it: a probe of the time index (`OFFSET limit - 1 LIMIT 2`),
    /// in this snapshot, so it agrees with the rows read next.
    pub async fn last_of_page(
        &mut self,
        query: &MeasurementQuery,
    ) -> Result<Option<RowKey>, sqlx::Error> {
        let Some(limit) = query.limit else {
            return Ok(None);
        };
        let mut sql = select(query, "time_instant, id_entity");
        // `limit` is at most QUERY_MAX_LIMIT, far below i64::MAX.
        sql.push(" OFFSET ")
            .push_bind(i64::try_from(limit - 1).unwrap_or(i64::MAX))
            .push(" LIMIT 2");
        let rows: Vec<(time::PrimitiveDateTime, String)> =
            sql.build_query_as().fetch_all(&mut *self.tx).await?;
        Ok(match rows.as_slice() {
            [(time_instant, id_entity), _] => Some(RowKey {
                time_instant: *time_instant,
                id_entity: id_entity.clone(),
            }),
            _ => None,
        })
    }

    /// The measurements matching `query`, read from the database as the caller
    /// consumes them (never all in memory). Ordered by time, then station.
    pub fn measurements(
        self,
        query: MeasurementQuery,
    ) -> impl Stream<Item = Result<Measurement, sqlx::Error>> + Send + 'static {
        let mut tx = self.tx;
        async_stream::try_stream! {
            let mut sql = select(&query, COLUMNS);
            push_limit(&mut sql, query.limit);
            {
                let mut rows = sql.build_query_as::<Measurement>().fetch(&mut *tx);
                while let Some(row) = rows.try_next().await? {
                    yield row;
                }
            }
            end_read_only(tx).await;
        }
    }
}

/// Ends a read-only transaction whose rows have all been read. Its COMMIT
/// changes nothing, so when it fails (the server went away: a replica being
/// stopped) the answer, complete by now, stands; the failure is logged.
async fn end_read_only(tx: Transaction<'static, Postgres>) {
    if let Err(error) = tx.commit().await {
        tracing::warn!(%error, "a read-only transaction did not end cleanly after all its rows were read");
    }
}

/// `SELECT columns ... WHERE ... ORDER BY ...` with every value bound as a
/// parameter.
fn select(query: &MeasurementQuery, columns: &str) -> QueryBuilder<Postgres> {
    let mut sql = QueryBuilder::new(format!("SELECT {columns} FROM air_quality_measurements"));
    let mut glue = " WHERE ";
    if !query.stations.is_empty() {
        sql.push(glue)
            .push("id_entity = ANY(")
            .push_bind(query.stations.clone())
            .push(")");
        glue = " AND ";
    }
    if let Some(from) = query.from {
        sql.push(glue).push("time_instant >= ").push_bind(from);
        glue = " AND ";
    }
    if let Some(to) = query.to {
        sql.push(glue).push("time_instant < ").push_bind(to);
        glue = " AND ";
    }
    if let Some(after) = &query.after {
        // A row comparison: the time index seeks straight to the key.
        let beyond = match query.order {
            Order::Asc => "(time_instant, id_entity) > (",
            Order::Desc => "(time_instant, id_entity) < (",
        };
        sql.push(glue)
            .push(beyond)
            .push_bind(after.time_instant)
            .push(", ")
            .push_bind(after.id_entity.clone())
            .push(")");
    }
    sql.push(match query.order {
        Order::Asc => " ORDER BY time_instant ASC, id_entity ASC",
        Order::Desc => " ORDER BY time_instant DESC, id_entity DESC",
    });
    sql
}

fn push_limit(sql: &mut QueryBuilder<Postgres>, limit: Option<u64>) {
    if let Some(limit) = limit {
        // `limit` is at most QUERY_MAX_LIMIT, far below i64::MAX.
        sql.push(" LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_bare_query_has_no_filter_and_the_default_order() {
        let sql = select(&MeasurementQuery::default(), COLUMNS).into_string();
        assert_eq!(
            sql,
            format!(
                "SELECT {COLUMNS} FROM air_quality_measurements ORDER BY time_instant ASC, id_entity ASC"
            )
        );
    }

    #[test]
    fn filters_are_bound_parameters() {
        let query = MeasurementQuery {
            stations: vec!["aq_jaen".into()],
            from: Some(datetime!(2016-10-01 0:00)),
            to: Some(datetime!(2016-10-02 0:00)),
            order: Order::Desc,
            limit: Some(3),
            after: Some(RowKey {
                time_instant: datetime!(2016-10-01 12:00),
                id_entity: "aq_jaen".into(),
            }),
            format: None,
        };
        let mut sql = select(&query, COLUMNS);
        push_limit(&mut sql, query.limit);
        let sql = sql.into_string();
        assert!(
            sql.ends_with(
                "WHERE id_entity = ANY($1) AND time_instant >= $2 AND time_instant < $3 \
             AND (time_instant, id_entity) < ($4, $5) \
             ORDER BY time_instant DESC, id_entity DESC LIMIT $6"
            ),
            "{sql}"
        );
        assert!(!sql.contains("aq_jaen"));
    }
}
