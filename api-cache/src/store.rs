//! Redis: where responses are kept.
//!
//! Every operation has a short timeout (`REDIS_TIMEOUT_MS`); past it, or on any
//! error, the caller is told the store is unavailable and answers without it.
//! The connection is made lazily and remade in the background after a failure,
//! so api-cache starts without Redis and resumes caching when Redis returns.

use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo};
use secrecy::ExposeSecret;

use crate::cache::entry::StoredResponse;
use crate::cache::key::CacheKey;
use crate::config::Config;

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(StoredResponse),
    Miss,
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

    pub async fn get(&self, key: &CacheKey) -> Lookup {
        let mut connection = self.connection.clone();
        match self
            .bounded(connection.get::<_, Option<Vec<u8>>>(key.as_str()))
            .await
        {
            Ok(Some(bytes)) => match StoredResponse::decode(&Bytes::from(bytes)) {
                Ok(entry) => Lookup::Hit(entry),
                Err(error) => {
                    tracing::warn!(%key, %error, "unreadable cache entry; treating as a miss");
                    Lookup::Miss
                }
            },
            Ok(None) => Lookup::Miss,
            Err(error) => {
                tracing::warn!(%key, %error, "cache lookup failed; bypassing the cache");
                Lookup::Unavailable
            }
        }
    }

    /// `SET key value EX ttl`.
    pub async fn set(
        &self,
        key: &CacheKey,
        entry: &StoredResponse,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let value = entry.encode();
        self.bounded(connection.set_ex::<_, _, ()>(key.as_str(), value, ttl.as_secs().max(1)))
            .await
    }

    /// PING, for readiness reports.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        self.bounded(redis::cmd("PING").query_async::<String>(&mut connection))
            .await
            .map(drop)
    }
}
