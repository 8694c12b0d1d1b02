//! Redis: where responses are kept.
//!
//! Every operation has a short timeout (`REDIS_TIMEOUT_MS`); past it, or on any
//! error, the caller is told the store is unavailable and answers without it.
//! The connection is made lazily and remade in the background after a failure,
//! so api-cache starts without Redis and resumes caching when Redis returns.
//!
//! Keys of one URL (`K` = `<prefix>:<digest>`):
//! - `K`: its entry, or a Vary index when its responses vary;
//! - `K:v:<digest of the varied request values>`: one entry per variant;
//! - `K:variants`: the set of those variant keys, to invalidate them all.
//!
//! Every key is written with a TTL (the entry's lifetime plus grace).

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo};
use secrecy::ExposeSecret;

use crate::cache::entry::{StoredResponse, StoredValue};
use crate::cache::key::CacheKey;
use crate::cache::vary::{request_values, variant_key};
use crate::config::Config;

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// The entry for this request (the matching variant, if the URL varies).
    Found(StoredResponse),
    /// Nothing for this request. `flight` is the key concurrent requests for
    /// the same response share: the variant key when the URL is known to vary.
    Absent { vary_miss: bool, flight: CacheKey },
    /// Redis did not answer in time or failed: serve without the cache.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

#[derive(Clone)]
pub struct RedisStore {
    connection: ConnectionManager,
    timeout: Duration,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn variants_set(primary: &CacheKey) -> CacheKey {
    CacheKey::derived(primary, "variants")
}

impl RedisStore {
    /// Prepares the connection without making it.
    pub fn connect_lazy(config: &Config) -> Result<Self, StoreError> {
        let info = ConnectionAddr::Tcp(config.redis_host.clone(), config.redis_port)
            .into_connection_info()?;
        let mut settings = info.redis_settings().clone().set_db(config.redis_db);
        if let Some(username) = &config.redis_username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &config.redis_password {
            settings = settings.set_password(password.expose_secret());
        }
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let timeout = config.redis_timeout();
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // One attempt per reconnection: a refused connection fails at once and
            // the next command tries again, instead of queueing behind a backoff.
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client, manager_config)?;
        Ok(Self {
            connection,
            timeout,
        })
    }

    async fn bounded<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => Ok(result?),
            Err(_elapsed) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<StoredValue>, StoreError> {
        let mut connection = self.connection.clone();
        let Some(bytes) = self
            .bounded(connection.get::<_, Option<Vec<u8>>>(key.as_str()))
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

    /// Finds the stored response for a request to the URL of `primary`.
    pub async fn lookup(&self, primary: &CacheKey, request: &HeaderMap) -> Lookup {
        let result = async {
            match self.get(primary).await? {
                None => Ok(Lookup::Absent {
                    vary_miss: false,
                    flight: primary.clone(),
                }),
                Some(StoredValue::Entry(entry)) => Ok(Lookup::Found(entry)),
                Some(StoredValue::VaryIndex(names)) => {
                    let variant = variant_key(primary, &request_values(&names, request));
                    Ok(match self.get(&variant).await? {
                        Some(StoredValue::Entry(entry)) => Lookup::Found(entry),
                        _ => Lookup::Absent {
                            vary_miss: true,
                            flight: variant,
                        },
                    })
                }
            }
        };
        match result.await {
            Ok(lookup) => lookup,
            Err(error) => {
                let error: StoreError = error;
                tracing::warn!(key = %primary, %error, "cache lookup failed; bypassing the cache");
                Lookup::Unavailable
            }
        }
    }

    /// Stores `entry` for the URL of `primary`; with varied headers (`vary`),
    /// as a variant next to the URL's Vary index.
    pub async fn store(
        &self,
        primary: &CacheKey,
        entry: &StoredResponse,
        vary: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let seconds = ttl.as_secs().max(1);
        let mut pipe = redis::pipe();
        if vary.is_empty() {
            pipe.set_ex(primary.as_str(), entry.encode(), seconds)
                .ignore();
        } else {
            let variant = variant_key(primary, &entry.vary);
            let set = variants_set(primary);
            pipe.set_ex(
                primary.as_str(),
                StoredValue::encode_vary_index(vary),
                seconds,
            )
            .ignore()
            .set_ex(variant.as_str(), entry.encode(), seconds)
            .ignore()
            .sadd(set.as_str(), variant.as_str())
            .ignore()
            // The set lives as long as its longest-lived variant (Redis >= 7).
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
        }
        let mut connection = self.connection.clone();
        self.bounded(pipe.query_async::<()>(&mut connection)).await
    }

    /// Removes everything stored for the URL of `primary`, every variant included.
    pub async fn invalidate(&self, primary: &CacheKey) -> Result<usize, StoreError> {
        let mut connection = self.connection.clone();
        let set = variants_set(primary);
        let variants: Vec<String> = self.bounded(connection.smembers(set.as_str())).await?;
        let mut keys = vec![primary.as_str().to_owned(), set.as_str().to_owned()];
        keys.extend(variants);
        let removed: usize = self.bounded(connection.del(keys)).await?;
        Ok(removed)
    }

    /// PING, for readiness reports.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("PING").query_async::<String>(&mut connection))
            .await
            .map(drop)
    }
}
