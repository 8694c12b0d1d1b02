//! Redis: the store every replica shares.
//!
//! Every operation has a short timeout (`REDIS_TIMEOUT_MS`) and goes through a
//! circuit breaker: after `REDIS_BREAKER_FAILURES` consecutive failures Redis is
//! not tried for `REDIS_BREAKER_COOLDOWN_MS`, so an outage costs no timeout per
//! request. The connection is made lazily and remade in the background, so
//! api-cache starts without Redis and resumes when it returns. AUTH (with an
//! ACL user name if set) and TLS are supported.
//!
//! Keys of one URL (`K` = `<prefix>:<digest>`), each written with a TTL:
//! - `K`: its entry, or a Vary index when its responses vary;
//! - `K:v:<digest of the varied request values>`: one entry per variant;
//! - `K:variants`: the set of those variant keys;
//! - `K:lock`: held by the replica fetching it (`SET NX PX`).
//!
//! Tag sets, for purges without scanning: `<prefix>:tag:path:<path prefix>`
//! and `<prefix>:tag:key:<surrogate key>`, each the set of URL keys tagged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use secrecy::ExposeSecret;
use service_kit::Metrics;

use crate::cache::breaker::{Breaker, State};
use crate::cache::entry::{StoredResponse, StoredValue};
use crate::cache::key::CacheKey;
use crate::cache::vary::variant_key;
use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis is skipped while the circuit breaker is open")]
    CircuitOpen,
    #[error("cannot read REDIS_TLS_CA_FILE: {0}")]
    CaFile(std::io::Error),
}

/// Releases a lock only if it still holds our token (another replica may hold it since).
const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

#[derive(Clone)]
pub struct RedisStore {
    client: redis::Client,
    connection: ConnectionManager,
    timeout: Duration,
    breaker: Arc<Breaker>,
    metrics: Metrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Gives a breaker permit back when an operation is abandoned.
struct PermitGuard<'a> {
    breaker: &'a Breaker,
    permit: Option<crate::cache::breaker::Permit>,
}

impl PermitGuard<'_> {
    fn disarm(mut self) {
        self.permit = None;
    }
}

impl Drop for PermitGuard<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.breaker.abandon(permit);
        }
    }
}

pub(crate) fn variants_set(primary: &CacheKey) -> CacheKey {
    CacheKey::derived(primary, "variants")
}

impl RedisStore {
    /// Prepares the connection without making it.
    pub fn connect_lazy(config: &Config, metrics: Metrics) -> Result<Self, StoreError> {
        let address = if config.redis_tls {
            ConnectionAddr::TcpTls {
                host: config.redis_host.clone(),
                port: config.redis_port,
                insecure: false,
                tls_params: None,
            }
        } else {
            ConnectionAddr::Tcp(config.redis_host.clone(), config.redis_port)
        };
        let info = address.into_connection_info()?;
        let mut settings = info.redis_settings().clone().set_db(config.redis_db);
        if let Some(username) = &config.redis_username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.redis_password {
            settings = settings.set_password(password.expose_secret());
        }
        let info = info.set_redis_settings(settings);
        let client = match (&config.redis_tls, &config.redis_tls_ca_file) {
            (true, Some(ca_file)) => {
                let root_cert = std::fs::read(ca_file).map_err(StoreError::CaFile)?;
                redis::Client::build_with_tls(
                    info,
                    TlsCertificates {
                        client_tls: None,
                        root_cert: Some(root_cert),
                    },
                )?
            }
            _ => redis::Client::open(info)?,
        };
        let timeout = config.redis_timeout();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One attempt per reconnection: a refused connection fails at once and
            // the next command tries again, instead of queueing behind a backoff.
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
        let breaker = Arc::new(Breaker::new(
            config.redis_breaker_failures,
            Duration::from_millis(config.redis_breaker_cooldown_ms),
        ));
        metrics.scope(|| metrics::gauge!("api_cache_redis_breaker_state").set(0.0));
        Ok(Self {
            client,
            connection,
            timeout,
            breaker,
            metrics,
        })
    }

    /// The client, for the pub/sub connection.
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    pub fn breaker_state(&self) -> State {
        self.breaker.state()
    }

    /// Runs one operation through the breaker, with the timeout, and records it.
    async fn run<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let Some(permit) = self.breaker.allow(Instant::now()) else {
            return Err(StoreError::CircuitOpen);
        };
        // If this future is dropped mid-operation, the permit is given back.
        let guard = PermitGuard {
            breaker: &self.breaker,
            permit: Some(permit),
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, future).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_elapsed) => Err(StoreError::Timeout(self.timeout)),
        };
        guard.disarm();
        let transition = self.breaker.record(permit, result.is_ok(), Instant::now());
        self.metrics.scope(|| {
            metrics::histogram!("api_cache_redis_operation_duration_seconds", "operation" => operation)
                .record(started.elapsed().as_secs_f64());
            if result.is_err() {
                metrics::counter!("api_cache_redis_errors_total", "operation" => operation).increment(1);
            }
            if let Some(state) = transition {
                metrics::gauge!("api_cache_redis_breaker_state").set(state.gauge());
                metrics::counter!("api_cache_redis_breaker_transitions_total", "to" => format!("{state:?}").to_lowercase())
                    .increment(1);
            }
        });
        if let Some(state) = transition {
            tracing::warn!(?state, "redis circuit breaker changed state");
        }
        result
    }

    /// The value under `key`; an unreadable one counts as absent.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<StoredValue>, StoreError> {
        let mut connection = self.connection.clone();
        let Some(bytes) = self
            .run("get", connection.get::<_, Option<Vec<u8>>>(key.as_str()))
            .await?
        else {
            return Ok(None);
        };
        match StoredValue::decode(&Bytes::from(bytes)) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::warn!(%key, %error, "unreadable cache value; treating it as a miss");
                Ok(None)
            }
        }
    }

    /// Stores `entry` for the URL of `primary` (as a variant when `vary` is not
    /// empty) and adds the URL to every tag set in `tags`.
    pub async fn store(
        &self,
        primary: &CacheKey,
        entry: &StoredResponse,
        vary: &[String],
        tags: &[CacheKey],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let seconds = ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        // A set lives as long as its longest-lived member (EXPIRE NX then GT; Redis >= 7).
        let add_to_set = |pipe: &mut redis::Pipeline, set: &CacheKey, member: &str| {
            pipe.sadd(set.as_str(), member)
                .ignore()
                .cmd("EXPIRE")
                .arg(set.as_str())
                .arg(seconds)
                .arg("NX")
                .ignore()
                .cmd("EXPIRE")
                .arg(set.as_str())
                .arg(seconds)
                .arg("GT")
                .ignore();
        };
        if vary.is_empty() {
            pipe.set_ex(primary.as_str(), entry.encode(), seconds)
                .ignore();
        } else {
            let variant = variant_key(primary, &entry.vary);
            pipe.set_ex(
                primary.as_str(),
                StoredValue::encode_vary_index(vary),
                seconds,
            )
            .ignore()
            .set_ex(variant.as_str(), entry.encode(), seconds)
            .ignore();
            add_to_set(&mut pipe, &variants_set(primary), variant.as_str());
        }
        for tag in tags {
            add_to_set(&mut pipe, tag, primary.as_str());
        }
        let mut connection = self.connection.clone();
        self.run("store", pipe.query_async::<()>(&mut connection))
            .await
    }

    /// The keys holding entries of the URL of `primary` (itself, or its variants).
    async fn entry_keys(&self, primary: &CacheKey) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut keys: Vec<String> = self
            .run(
                "smembers",
                connection.smembers(variants_set(primary).as_str()),
            )
            .await?;
        keys.push(primary.as_str().to_owned());
        Ok(keys)
    }

    /// Removes everything stored for the URL of `primary`, every variant included.
    /// Returns the keys removed, for the other replicas to drop their copies.
    pub async fn invalidate(&self, primary: &CacheKey) -> Result<Vec<String>, StoreError> {
        let mut keys = self.entry_keys(primary).await?;
        keys.push(variants_set(primary).as_str().to_owned());
        let mut connection = self.connection.clone();
        let _removed: usize = self.run("del", connection.del(&keys)).await?;
        Ok(keys)
    }

    /// Marks the URL's entries stale (a soft purge): they stay for their grace
    /// period, are revalidated before any reuse, and still serve if the origin fails.
    pub async fn mark_stale(&self, primary: &CacheKey) -> Result<Vec<String>, StoreError> {
        let keys = self.entry_keys(primary).await?;
        let mut marked = Vec::new();
        for key in keys {
            let key = CacheKey::from_raw(key);
            if let Some(StoredValue::Entry(mut entry)) = self.get(&key).await? {
                entry.lifetime_ms = 0;
                let mut connection = self.connection.clone();
                let set = redis::cmd("SET")
                    .arg(key.as_str())
                    .arg(entry.encode())
                    .arg("KEEPTTL")
                    .arg("XX")
                    .clone();
                self.run("set", set.query_async::<Option<String>>(&mut connection))
                    .await?;
                marked.push(key.as_str().to_owned());
            }
        }
        Ok(marked)
    }

    /// The URL keys in a tag set.
    pub async fn tagged(&self, tag: &CacheKey) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        self.run("smembers", connection.smembers(tag.as_str()))
            .await
    }

    pub async fn delete(&self, key: &CacheKey) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run("del", connection.del::<_, usize>(key.as_str()))
            .await
            .map(drop)
    }

    /// `SET key token NX PX ttl`: whether this caller now holds the lock.
    pub async fn try_lock(
        &self,
        key: &CacheKey,
        token: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut connection = self.connection.clone();
        let command = redis::cmd("SET")
            .arg(key.as_str())
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
            .clone();
        let reply: Option<String> = self
            .run("lock", command.query_async(&mut connection))
            .await?;
        Ok(reply.is_some())
    }

    /// How long the lock has left (`PTTL`); `None` if it is gone.
    pub async fn lock_remaining(&self, key: &CacheKey) -> Result<Option<Duration>, StoreError> {
        let mut connection = self.connection.clone();
        let millis: i64 = self.run("pttl", connection.pttl(key.as_str())).await?;
        Ok(u64::try_from(millis).ok().map(Duration::from_millis))
    }

    /// Releases the lock if `token` still holds it.
    pub async fn unlock(&self, key: &CacheKey, token: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let script = redis::Script::new(UNLOCK);
        let mut invocation = script.key(key.as_str());
        invocation.arg(token);
        self.run("unlock", invocation.invoke_async::<i64>(&mut connection))
            .await
            .map(drop)
    }

    pub async fn publish(&self, channel: &str, message: &str) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run("publish", connection.publish::<_, _, i64>(channel, message))
            .await
            .map(drop)
    }

    /// PING, for readiness reports.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.run(
            "ping",
            redis::cmd("PING").query_async::<String>(&mut connection),
        )
        .await
        .map(drop)
    }
}
