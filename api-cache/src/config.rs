//! api-cache's environment variables. Each field's comment names its variable,
//! its default and what it is for; the README's table is kept in step with it.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use service_kit::ConfigError;
use service_kit::config::{from_env, non_empty};

pub const DEFAULT_PORT: u16 = 8080;

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `API_CACHE_PORT`: the port api-cache listens on. Default 8080.
    #[serde(default = "default_port")]
    pub api_cache_port: u16,
    /// `API_CACHE_ADMIN_PORT`: the port of `/metrics`, `/readyz`, `/healthz` and
    /// the purge API, kept off the public one. Default 9090.
    #[serde(default = "default_admin_port")]
    pub api_cache_admin_port: u16,
    /// `BACKEND_HOST`: where api-rest runs. Default `api-rest`.
    #[serde(default = "default_backend_host")]
    pub backend_host: String,
    /// `BACKEND_PORT`: api-rest's port. Default 5000.
    #[serde(default = "default_backend_port")]
    pub backend_port: u16,
    /// `BACKEND_ADMIN_PORT`: api-rest's admin port, where its change feed is
    /// (equal to `API_REST_ADMIN_PORT`). Default 9091.
    #[serde(default = "default_backend_admin_port")]
    pub backend_admin_port: u16,
    /// `BACKEND_CONNECT_TIMEOUT_MS`: giving up connecting to api-rest (then 502). Default 1000.
    #[serde(default = "default_backend_connect_timeout")]
    pub backend_connect_timeout_ms: u64,
    /// `BACKEND_TIMEOUT_MS`: waiting for api-rest's response headers (then 504), and
    /// the longest pause while reading its body. Default 10000.
    #[serde(default = "default_backend_timeout")]
    pub backend_timeout_ms: u64,
    /// `REDIS_HOST`: the Redis server. Default `redis`.
    #[serde(default = "default_redis_host")]
    pub redis_host: String,
    /// `REDIS_PORT`: its port. Default 6379.
    #[serde(default = "default_redis_port")]
    pub redis_port: u16,
    /// `REDIS_CLUSTER_NODES`: seed nodes of a Redis Cluster, `host:port,...` or
    /// `redis://host:port,...`. Set, api-cache talks to that cluster and
    /// `REDIS_HOST`/`REDIS_PORT` are not used. Optional.
    #[serde(default)]
    pub redis_cluster_nodes: Option<String>,
    /// `REDIS_USERNAME`: an ACL user name. Optional (Redis' `default` user).
    #[serde(default)]
    pub redis_username: Option<String>,
    /// `REDIS_PASSWORD`: sent with AUTH. Optional; empty means none.
    #[serde(default)]
    pub redis_password: Option<SecretString>,
    /// `REDIS_DB`: the database number. Default 0.
    #[serde(default)]
    pub redis_db: i64,
    /// `REDIS_TIMEOUT_MS`: the longest one Redis operation may take before the
    /// request is answered without Redis. Default 50.
    #[serde(default = "default_redis_timeout")]
    pub redis_timeout_ms: u64,
    /// `REDIS_TLS`: `true` to connect with TLS (`rediss://`). Default `false`.
    #[serde(default)]
    pub redis_tls: bool,
    /// `REDIS_TLS_CA_FILE`: a PEM file of CA certificates to trust for Redis' TLS
    /// certificate. Optional; without it the system's roots are trusted.
    #[serde(default)]
    pub redis_tls_ca_file: Option<String>,
    /// `REDIS_BREAKER_FAILURES`: consecutive failed Redis operations that open the
    /// circuit breaker. Default 3.
    #[serde(default = "default_breaker_failures")]
    pub redis_breaker_failures: u32,
    /// `REDIS_BREAKER_COOLDOWN_MS`: how long an open breaker skips Redis before one
    /// probe is tried. Default 1000.
    #[serde(default = "default_breaker_cooldown")]
    pub redis_breaker_cooldown_ms: u64,
    /// `CACHE_TTL_SECONDS`: the freshness lifetime of a response whose origin
    /// declares none (no `Cache-Control` max-age/s-maxage, no `Expires`).
    /// Default 30; 0 keeps only what origins declare (strict RFC 9111).
    #[serde(default = "default_ttl")]
    pub cache_ttl_seconds: u64,
    /// `CACHE_GRACE_SECONDS`: how long an entry stays in Redis after it goes
    /// stale: to be revalidated (a 304 instead of a new body), and to be served
    /// when the origin is down, times out or fails (stale-if-error) unless the
    /// origin's directives say otherwise. Default 300.
    #[serde(default = "default_grace")]
    pub cache_grace_seconds: u64,
    /// `CACHE_STALE_WHILE_REVALIDATE_SECONDS`: serve a stale entry this long past
    /// its freshness while it is refreshed in the background; the origin's
    /// `stale-while-revalidate` overrides it. Default 0 (off).
    #[serde(default)]
    pub cache_stale_while_revalidate_seconds: u64,
    /// `CACHE_LOCAL_MAX_BYTES`: the in-process tier's size; 0 disables it.
    /// Default 64 MiB.
    #[serde(default = "default_local_max_bytes")]
    pub cache_local_max_bytes: u64,
    /// `CACHE_LOCK_TTL_MS`: how long a replica's fill lock lasts: other replicas
    /// wait for its fill at most this long (a crashed holder blocks no longer).
    /// Default 15000.
    #[serde(default = "default_lock_ttl")]
    pub cache_lock_ttl_ms: u64,
    /// `CACHE_PURGE_TOKEN`: the bearer token of `POST /_cache/purge`; the
    /// endpoint is disabled (404) while it is unset.
    #[serde(default)]
    pub cache_purge_token: Option<SecretString>,
    /// `BACKEND_MAX_CONCURRENT_REQUESTS`: requests to api-rest under way at
    /// once, at most; past it a request gets a stale entry if one may answer,
    /// else 503 with `Retry-After`. Default 128.
    #[serde(default = "default_backend_max_concurrent")]
    pub backend_max_concurrent_requests: usize,
    /// `CACHE_FILL_BUFFER_BYTES`: the most memory bodies being read from
    /// api-rest for the cache may hold between them; past it a body is passed
    /// through as it streams, not stored. Default 128 MiB.
    #[serde(default = "default_fill_buffer")]
    pub cache_fill_buffer_bytes: u64,
    /// `BACKEND_CHANGES_PATH`: the origin's data-change feed (server-sent
    /// events of the data version) on `BACKEND_ADMIN_PORT`, followed to retire
    /// outdated entries at once. Default `/changes`; empty disables it.
    #[serde(default = "default_changes_path")]
    pub backend_changes_path: String,
    /// `CACHE_KEY_PREFIX`: the prefix of every Redis key (`<prefix>:{<digest>}`). Default `api-cache`.
    #[serde(default = "default_prefix")]
    pub cache_key_prefix: String,
    /// `CACHE_COMPRESSION`: how bodies are stored: `gzip` (text types over 1 KiB,
    /// sent compressed to clients that accept it) or `none`. Default `gzip`.
    #[serde(default = "default_compression")]
    pub cache_compression: String,
    /// `CACHE_MAX_BODY_BYTES`: larger responses are passed through but not stored. Default 16 MiB.
    #[serde(default = "default_max_body")]
    pub cache_max_body_bytes: usize,
    /// `CACHE_COALESCE_WAIT_MS`: how long a request waits for a concurrent identical
    /// miss before fetching on its own. Default 10000.
    #[serde(default = "default_coalesce_wait")]
    pub cache_coalesce_wait_ms: u64,
    /// `CACHE_COALESCE_MAX_WAITERS`: requests that may wait for one key; later ones
    /// fetch on their own. Default 10000.
    #[serde(default = "default_coalesce_max_waiters")]
    pub cache_coalesce_max_waiters: usize,
}

fn default_port() -> u16 {
    DEFAULT_PORT
}
fn default_backend_host() -> String {
    "api-rest".into()
}
fn default_backend_port() -> u16 {
    5000
}
fn default_admin_port() -> u16 {
    9090
}
fn default_backend_max_concurrent() -> usize {
    128
}
fn default_fill_buffer() -> u64 {
    128 * 1024 * 1024
}
fn default_backend_admin_port() -> u16 {
    9091
}
fn default_backend_connect_timeout() -> u64 {
    1000
}
fn default_backend_timeout() -> u64 {
    10_000
}
fn default_redis_host() -> String {
    "redis".into()
}
fn default_redis_port() -> u16 {
    6379
}
fn default_redis_timeout() -> u64 {
    50
}
fn default_breaker_failures() -> u32 {
    3
}
fn default_breaker_cooldown() -> u64 {
    1000
}
fn default_local_max_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_lock_ttl() -> u64 {
    15_000
}
fn default_changes_path() -> String {
    "/changes".into()
}
fn default_ttl() -> u64 {
    30
}
fn default_compression() -> String {
    "gzip".into()
}
fn default_grace() -> u64 {
    300
}
fn default_prefix() -> String {
    "api-cache".into()
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}
fn default_coalesce_wait() -> u64 {
    10_000
}
fn default_coalesce_max_waiters() -> usize {
    10_000
}

impl Config {
    /// Reads and checks the variables; the error names the first bad one.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_env::<Self>()?.validate()
    }

    pub fn validate(mut self) -> Result<Self, ConfigError> {
        use secrecy::ExposeSecret;
        self.redis_username = non_empty(self.redis_username.take());
        self.redis_tls_ca_file = non_empty(self.redis_tls_ca_file.take());
        self.redis_cluster_nodes = non_empty(self.redis_cluster_nodes.take());
        if let Some(nodes) = &self.redis_cluster_nodes {
            parse_cluster_nodes(nodes)
                .map_err(|why| ConfigError::invalid("REDIS_CLUSTER_NODES", why))?;
            if self.redis_db != 0 {
                return Err(ConfigError::invalid(
                    "REDIS_DB",
                    "must be 0 with REDIS_CLUSTER_NODES (a cluster has one database)",
                ));
            }
        }
        if self
            .cache_purge_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().is_empty())
        {
            self.cache_purge_token = None;
        }
        if self
            .redis_password
            .as_ref()
            .is_some_and(|p| p.expose_secret().is_empty())
        {
            self.redis_password = None;
        }
        for (name, value) in [
            ("BACKEND_HOST", &self.backend_host),
            ("REDIS_HOST", &self.redis_host),
            ("CACHE_KEY_PREFIX", &self.cache_key_prefix),
        ] {
            if value.is_empty() {
                return Err(ConfigError::invalid(name, "must not be empty"));
            }
        }
        if !matches!(self.cache_compression.as_str(), "gzip" | "none") {
            return Err(ConfigError::invalid(
                "CACHE_COMPRESSION",
                format!("expected gzip or none, got '{}'", self.cache_compression),
            ));
        }
        if self.backend_max_concurrent_requests == 0 {
            return Err(ConfigError::invalid(
                "BACKEND_MAX_CONCURRENT_REQUESTS",
                "must be at least 1",
            ));
        }
        for (name, value) in [
            ("REDIS_TIMEOUT_MS", self.redis_timeout_ms),
            ("BACKEND_TIMEOUT_MS", self.backend_timeout_ms),
            (
                "BACKEND_CONNECT_TIMEOUT_MS",
                self.backend_connect_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(ConfigError::invalid(name, "must be at least 1"));
            }
        }
        Ok(self)
    }

    /// The seed nodes of the Redis Cluster, if one is configured.
    pub fn redis_cluster_seeds(&self) -> Option<Vec<(String, u16)>> {
        let nodes = self.redis_cluster_nodes.as_deref()?;
        parse_cluster_nodes(nodes).ok()
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }
    pub fn backend_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_timeout_ms)
    }
    pub fn backend_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.backend_connect_timeout_ms)
    }
    pub fn lock_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_lock_ttl_ms)
    }
    pub fn coalesce_wait(&self) -> Duration {
        Duration::from_millis(self.cache_coalesce_wait_ms)
    }
}

/// `host:port,host:port` or `redis://host:port,...` (a trailing `/` allowed).
/// Credentials belong in `REDIS_USERNAME`/`REDIS_PASSWORD`, not in the list,
/// which is logged.
fn parse_cluster_nodes(text: &str) -> Result<Vec<(String, u16)>, String> {
    let nodes = text
        .split(',')
        .map(str::trim)
        .filter(|node| !node.is_empty())
        .map(|node| {
            let address = node
                .strip_prefix("redis://")
                .or_else(|| node.strip_prefix("rediss://"))
                .unwrap_or(node)
                .trim_end_matches('/');
            if address.contains('@') {
                // Not echoed: it holds a secret.
                return Err(
                    "a node carries credentials: put them in REDIS_USERNAME and REDIS_PASSWORD"
                        .into(),
                );
            }
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| format!("'{node}' is not host:port"))?;
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("'{node}' has no valid port"))?;
            if host.is_empty() {
                return Err(format!("'{node}' has no host"));
            }
            Ok((host.to_owned(), port))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if nodes.is_empty() {
        return Err("names no node".into());
    }
    Ok(nodes)
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
    fn defaults_match_the_original_design() {
        let config = load(&[]).unwrap();
        assert_eq!(config.api_cache_port, 8080);
        assert_eq!(
            (config.backend_host.as_str(), config.backend_port),
            ("api-rest", 5000)
        );
        assert_eq!(
            (config.redis_host.as_str(), config.redis_port),
            ("redis", 6379)
        );
        assert_eq!(config.cache_ttl_seconds, 30);
        assert!(config.redis_password.is_none());
    }

    #[test]
    fn an_empty_password_means_none_and_a_set_one_is_not_printed() {
        assert!(
            load(&[("REDIS_PASSWORD", "")])
                .unwrap()
                .redis_password
                .is_none()
        );
        let config = load(&[("REDIS_PASSWORD", "s3cr3t-value")]).unwrap();
        assert!(config.redis_password.is_some());
        assert!(!format!("{config:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn cluster_nodes_are_a_list_of_addresses_or_urls_without_credentials() {
        let config = load(&[(
            "REDIS_CLUSTER_NODES",
            "10.0.0.1:7000, redis://cache-2:7001/,",
        )])
        .unwrap();
        assert_eq!(
            config.redis_cluster_seeds().unwrap(),
            [("10.0.0.1".to_owned(), 7000), ("cache-2".to_owned(), 7001)]
        );
        assert!(
            load(&[("REDIS_CLUSTER_NODES", "")])
                .unwrap()
                .redis_cluster_seeds()
                .is_none()
        );
        for bad in [
            "cache-1",
            "redis://u:p@cache-1:7000",
            ":7000",
            "cache:99999",
            " , ",
        ] {
            let error = load(&[("REDIS_CLUSTER_NODES", bad)]).unwrap_err();
            assert!(
                error.to_string().contains("REDIS_CLUSTER_NODES"),
                "{bad}: {error}"
            );
            assert!(!error.to_string().contains("u:p"), "{error}");
        }
        let error = load(&[("REDIS_CLUSTER_NODES", "a:1"), ("REDIS_DB", "2")]).unwrap_err();
        assert!(error.to_string().contains("REDIS_DB"), "{error}");
    }

    #[test]
    fn malformed_values_are_named() {
        let error = load(&[("CACHE_TTL_SECONDS", "-1")]).unwrap_err();
        assert!(error.to_string().contains("CACHE_TTL_SECONDS"), "{error}");
        let error = load(&[("REDIS_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(error.to_string().contains("REDIS_TIMEOUT_MS"), "{error}");
    }
}
