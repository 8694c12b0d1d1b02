//! api-rest's environment variables. Each field's comment names its variable,
//! its default and what it is for; the README's table is kept in step with it.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::ConfigError;
use service_kit::config::{from_env, non_empty};
use sqlx::postgres::PgSslMode;

pub const DEFAULT_PORT: u16 = 5000;
pub const DEFAULT_ADMIN_PORT: u16 = 9091;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `API_REST_PORT`: the port api-rest listens on (api-cache's `BACKEND_PORT`). Default 5000.
    #[serde(default = "default_port")]
    pub api_rest_port: u16,
    /// `API_REST_ADMIN_PORT`: the port of `/metrics`, `/readyz`, `/healthz` and
    /// `/changes`, kept off the public one (api-cache's `BACKEND_ADMIN_PORT`).
    /// Default 9091.
    #[serde(default = "default_admin_port")]
    pub api_rest_admin_port: u16,
    /// `CHANGES_MAX_SUBSCRIBERS`: open `/changes` streams at most (one per
    /// api-cache replica); more get 503. Default 64.
    #[serde(default = "default_changes_max_subscribers")]
    pub changes_max_subscribers: usize,
    /// `POSTGRES_HOST`: the PostgreSQL server. Default `postgres`.
    #[serde(default = "default_postgres_host")]
    pub postgres_host: String,
    /// `POSTGRES_PORT`: its port. Default 5432.
    #[serde(default = "default_postgres_port")]
    pub postgres_port: u16,
    /// `POSTGRES_READ_HOST`: a streaming replica (or a read-only Service in
    /// front of several) that serves the reads; the primary keeps `LISTEN`
    /// and serves a read when the replica is behind or down. Optional.
    #[serde(default)]
    pub postgres_read_host: Option<String>,
    /// `POSTGRES_READ_PORT`: its port. Default (also when empty): `POSTGRES_PORT`.
    #[serde(default)]
    pub postgres_read_port: Option<String>,
    /// `POSTGRES_READ_MAX_WAIT_MS`: how long a read waits for the replica to
    /// reach the newest announced data version before reading from the
    /// primary instead. Default 100.
    #[serde(default = "default_read_max_wait")]
    pub postgres_read_max_wait_ms: u64,
    /// `POSTGRES_DB`: the database holding the API schema. Default `postgres`.
    #[serde(default = "default_postgres_db")]
    pub postgres_db: String,
    /// `POSTGRES_API_USER`: the read-only user api-rest logs in as. Default `api`.
    #[serde(default = "default_api_user")]
    pub postgres_api_user: String,
    /// `POSTGRES_API_PASSWORD`: that user's password. Required.
    #[serde(default)]
    pub postgres_api_password: Option<SecretString>,
    /// `POSTGRES_API_SCHEMA`: the schema of `air_quality_measurements`. Default `api`.
    #[serde(default = "default_api_schema")]
    pub postgres_api_schema: String,
    /// `POSTGRES_SSLMODE`: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`,
    /// as libpq's sslmode. Default `prefer`.
    #[serde(default = "default_sslmode")]
    pub postgres_sslmode: String,
    /// `POSTGRES_SSLROOTCERT`: a PEM file of CA certificates for `verify-ca`/`verify-full`.
    /// Optional; without it the bundled Mozilla roots are trusted.
    #[serde(default)]
    pub postgres_sslrootcert: Option<String>,
    /// `POSTGRES_POOL_MAX_CONNECTIONS`: connections api-rest may open. Default 10.
    #[serde(default = "default_pool_max")]
    pub postgres_pool_max_connections: u32,
    /// `POSTGRES_ACQUIRE_TIMEOUT_MS`: how long a request waits for a connection before
    /// answering 503. Default 3000.
    #[serde(default = "default_acquire_timeout")]
    pub postgres_acquire_timeout_ms: u64,
    /// `POSTGRES_STATEMENT_TIMEOUT_SECONDS`: the longest a query (including streaming its
    /// rows to a slow client) may run. Default 120.
    #[serde(default = "default_statement_timeout")]
    pub postgres_statement_timeout_seconds: u64,
    /// `READINESS_TIMEOUT_MS`: `/readyz` answers 503 when the database does not answer
    /// within this time. Default 1000.
    #[serde(default = "default_readiness_timeout")]
    pub readiness_timeout_ms: u64,
    /// `QUERY_MAX_LIMIT`: the largest `limit` parameter accepted. Default 100000.
    #[serde(default = "default_max_limit")]
    pub query_max_limit: u64,
    /// `RESPONSE_MAX_AGE_SECONDS`: the freshness api-rest declares for
    /// `/air_quality` (`Cache-Control: public, max-age=N`); caches, api-cache
    /// first, keep a response this long before revalidating it. Default 30.
    #[serde(default = "default_max_age")]
    pub response_max_age_seconds: u64,
}

fn default_read_max_wait() -> u64 {
    100
}
fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_admin_port() -> u16 {
    DEFAULT_ADMIN_PORT
}
fn default_changes_max_subscribers() -> usize {
    64
}
fn default_postgres_host() -> String {
    "postgres".into()
}
fn default_postgres_port() -> u16 {
    5432
}
fn default_postgres_db() -> String {
    "postgres".into()
}
fn default_api_user() -> String {
    "api".into()
}
fn default_api_schema() -> String {
    "api".into()
}
fn default_sslmode() -> String {
    "prefer".into()
}
fn default_pool_max() -> u32 {
    10
}
fn default_acquire_timeout() -> u64 {
    3000
}
fn default_statement_timeout() -> u64 {
    120
}
fn default_readiness_timeout() -> u64 {
    1000
}
fn default_max_limit() -> u64 {
    100_000
}
fn default_max_age() -> u64 {
    30
}

impl Config {
    /// Reads and checks the variables; the error names the first bad one.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_env::<Self>()?.validate()
    }

    /// Checks what the types alone cannot.
    pub fn validate(mut self) -> Result<Self, ConfigError> {
        use secrecy::ExposeSecret;
        let password_set = self
            .postgres_api_password
            .as_ref()
            .is_some_and(|p| !p.expose_secret().is_empty());
        if !password_set {
            return Err(ConfigError::Missing("POSTGRES_API_PASSWORD".into()));
        }
        self.postgres_sslrootcert = non_empty(self.postgres_sslrootcert.take());
        self.postgres_read_host = non_empty(self.postgres_read_host.take());
        self.postgres_read_port = non_empty(self.postgres_read_port.take());
        if let Some(port) = &self.postgres_read_port
            && port.parse::<u16>().is_err()
        {
            return Err(ConfigError::invalid(
                "POSTGRES_READ_PORT",
                format!("expected a port number, got '{port}'"),
            ));
        }
        self.ssl_mode()?;
        for (name, value) in [
            ("POSTGRES_HOST", &self.postgres_host),
            ("POSTGRES_DB", &self.postgres_db),
            ("POSTGRES_API_USER", &self.postgres_api_user),
            ("POSTGRES_API_SCHEMA", &self.postgres_api_schema),
        ] {
            if value.is_empty() {
                return Err(ConfigError::invalid(name, "must not be empty"));
            }
        }
        if self.postgres_pool_max_connections == 0 {
            return Err(ConfigError::invalid(
                "POSTGRES_POOL_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        if self.query_max_limit == 0 {
            return Err(ConfigError::invalid(
                "QUERY_MAX_LIMIT",
                "must be at least 1",
            ));
        }
        Ok(self)
    }

    pub fn ssl_mode(&self) -> Result<PgSslMode, ConfigError> {
        self.postgres_sslmode.parse().map_err(|_| {
            ConfigError::invalid(
                "POSTGRES_SSLMODE",
                format!(
                    "expected disable, allow, prefer, require, verify-ca or verify-full, got '{}'",
                    self.postgres_sslmode
                ),
            )
        })
    }

    /// The replica reads go to, if one is configured: host and port.
    pub fn read_replica(&self) -> Option<(&str, u16)> {
        let host = self.postgres_read_host.as_deref()?;
        let port = self
            .postgres_read_port
            .as_deref()
            .and_then(|p| p.parse().ok());
        Some((host, port.unwrap_or(self.postgres_port)))
    }

    pub fn read_max_wait(&self) -> Duration {
        Duration::from_millis(self.postgres_read_max_wait_ms)
    }

    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.postgres_acquire_timeout_ms)
    }

    /// The `Cache-Control` value of `/air_quality`.
    pub fn cache_control(&self) -> String {
        format!("public, max-age={}", self.response_max_age_seconds)
    }

    pub fn readiness_timeout(&self) -> Duration {
        Duration::from_millis(self.readiness_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::config::from_vars;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        from_vars::<Config, _>(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )?
        .validate()
    }

    #[test]
    fn the_password_is_required_and_empty_means_missing() {
        assert_eq!(
            load(&[]).unwrap_err(),
            ConfigError::Missing("POSTGRES_API_PASSWORD".into())
        );
        assert_eq!(
            load(&[("POSTGRES_API_PASSWORD", "")]).unwrap_err(),
            ConfigError::Missing("POSTGRES_API_PASSWORD".into())
        );
    }

    #[test]
    fn defaults_match_the_original_design() {
        let config = load(&[("POSTGRES_API_PASSWORD", "x")]).unwrap();
        assert_eq!(config.api_rest_port, 5000);
        assert_eq!(config.postgres_host, "postgres");
        assert_eq!(config.postgres_port, 5432);
        assert_eq!(config.postgres_api_user, "api");
        assert_eq!(config.postgres_api_schema, "api");
    }

    #[test]
    fn a_bad_port_or_sslmode_is_named() {
        let error =
            load(&[("POSTGRES_API_PASSWORD", "x"), ("POSTGRES_PORT", "70000")]).unwrap_err();
        assert!(error.to_string().contains("POSTGRES_PORT"), "{error}");
        let error = load(&[
            ("POSTGRES_API_PASSWORD", "x"),
            ("POSTGRES_SSLMODE", "always"),
        ])
        .unwrap_err();
        assert!(error.to_string().contains("POSTGRES_SSLMODE"), "{error}");
    }

    #[test]
    fn a_read_replica_is_optional_and_defaults_to_the_primarys_port() {
        let password = ("POSTGRES_API_PASSWORD", "x");
        assert_eq!(load(&[password]).unwrap().read_replica(), None);
        assert_eq!(
            load(&[password, ("POSTGRES_READ_HOST", "")])
                .unwrap()
                .read_replica(),
            None
        );
        let config = load(&[
            password,
            ("POSTGRES_READ_HOST", "pg-ro"),
            ("POSTGRES_PORT", "6432"),
        ])
        .unwrap();
        assert_eq!(config.read_replica(), Some(("pg-ro", 6432)));
        let config = load(&[
            password,
            ("POSTGRES_READ_HOST", "pg-ro"),
            ("POSTGRES_READ_PORT", "5433"),
        ])
        .unwrap();
        assert_eq!(config.read_replica(), Some(("pg-ro", 5433)));
        assert_eq!(config.read_max_wait(), Duration::from_millis(100));
        let config = load(&[
            password,
            ("POSTGRES_READ_HOST", "pg-ro"),
            ("POSTGRES_READ_PORT", ""),
        ])
        .unwrap();
        assert_eq!(config.read_replica(), Some(("pg-ro", 5432)));
        let error = load(&[password, ("POSTGRES_READ_PORT", "x")]).unwrap_err();
        assert!(error.to_string().contains("POSTGRES_READ_PORT"), "{error}");
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let config = load(&[("POSTGRES_API_PASSWORD", "hunter2-secret")]).unwrap();
        assert!(!format!("{config:?}").contains("hunter2-secret"));
    }
}
