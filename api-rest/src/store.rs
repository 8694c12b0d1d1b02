//! PostgreSQL access: the pool, the measurement query, the readiness probe.
//!
//! The pool connects lazily, so api-rest starts (and reports not-ready) while the
//! database is down, and reconnects by itself when it returns: every connection
//! is checked before use and broken ones are replaced.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use futures_util::{Stream, TryStreamExt};
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use time::OffsetDateTime;

use crate::config::Config;
use crate::measurement::{COLUMNS, Measurement};
use crate::query::{MeasurementQuery, Order, RowKey};
use service_kit::ConfigError;

#[derive(Debug, Clone)]
pub struct Store {
    pool: PgPool,
    /// Requests waiting for a connection now.
    waiting: Arc<AtomicU64>,
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
    /// Builds the pool without connecting.
    pub fn connect_lazy(config: &Config) -> Result<Self, ConfigError> {
        let statement_timeout = format!("{}s", config.postgres_statement_timeout_seconds);
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&config.postgres_host)
            .port(config.postgres_port)
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
        let pool = PgPoolOptions::new()
            .max_connections(config.postgres_pool_max_connections)
            .min_connections(0)
            .acquire_timeout(config.acquire_timeout())
            .idle_timeout(Some(Duration::from_secs(300)))
            .test_before_acquire(true)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
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

    /// Opens a consistent, read-only view of the data and reads its version.
    /// The rows read through it later belong to exactly that version.
    pub async fn snapshot(&self) -> Result<Snapshot, sqlx::Error> {
        let waiting = Waiting::enter(&self.waiting);
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        drop(waiting);
        let (version, changed_at): (i64, OffsetDateTime) =
            sqlx::query_as("SELECT version, changed_at FROM air_quality_data_version")
                .fetch_one(&mut *tx)
                .await?;
        Ok(Snapshot {
            tx,
            version,
            changed_at: SystemTime::from(changed_at),
        })
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

/// A read-only transaction on one version of the data.
#[derive(Debug)]
pub struct Snapshot {
    tx: Transaction<'static, Postgres>,
    /// Bumped by a trigger on every statement that changes the table.
    pub version: i64,
    /// When that change was committed.
    pub changed_at: SystemTime,
}

impl Snapshot {
    /// The transaction, for the queries of each endpoint's module.
    pub(crate) fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx
    }

    /// Ends the read-only transaction.
    pub async fn finish(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
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
            tx.commit().await?;
        }
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
