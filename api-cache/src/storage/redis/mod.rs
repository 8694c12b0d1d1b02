//! Redis: the store every replica shares.
//!
//! Every operation has a short timeout (`REDIS_TIMEOUT_MS`) and goes through a
//! circuit breaker: after `REDIS_BREAKER_FAILURES` consecutive failures Redis is
//! not tried for `REDIS_BREAKER_COOLDOWN_MS`, so an outage costs no timeout per
//! request. The connection is made lazily and remade in the background, so
//! api-cache starts without Redis and resumes when it returns. AUTH (with an
//! ACL user name if set) and TLS are supported.
//!
//! Single node or cluster (`connection`), key and channel names
//! (`keyspace`), and following the replicas' events (`subscriber`).

mod connection;
mod keyspace;
mod subscriber;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use redis::AsyncCommands;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use self::connection::{Connection, Subscriber};
use self::keyspace::Keyspace;
use super::{Event, SharedStore, StoreError, StoreFuture, Tag, Write};
use crate::cache::breaker::{self, Breaker, Permit};
use crate::cache::key::{EntryKey, UrlKey};
use crate::cache::stored::StoredValue;
use crate::config::Config;
use crate::metrics::CacheMetrics;

/// The longest any key lives (a year): origins may declare absurd lifetimes.
const MAX_TTL_SECONDS: u64 = 365 * 24 * 3600;

/// Tag members asked for per round trip of a purge.
const TAG_PAGE: usize = 500;

fn unix_millis(time: SystemTime) -> u64 {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// Releases a lock only if it still holds our token (another replica may hold it since).
const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

#[derive(Clone)]
pub(crate) struct RedisStore {
    subscriber: Subscriber,
    connection: Connection,
    keys: Keyspace,
    timeout: Duration,
    breaker: Arc<Breaker>,
    events: broadcast::Sender<Event>,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.keys.prefix)
            .field("cluster", &self.keys.cluster)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Gives a breaker permit back when an operation is abandoned.
struct PermitGuard<'a> {
    breaker: &'a Breaker,
    permit: Option<Permit>,
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

impl RedisStore {
    /// Prepares the connection without making it.
    pub(crate) fn connect_lazy(config: &Config, metrics: CacheMetrics) -> Result<Self, StoreError> {
        let keys = Keyspace {
            prefix: Arc::from(config.cache_key_prefix.as_str()),
            cluster: config.redis_cluster_nodes.is_some(),
        };
        let events = broadcast::channel(1024).0;
        let on_push = {
            let (keys, events) = (keys.clone(), events.clone());
            move |push: redis::PushInfo| {
                if let Some(message) = subscriber::sharded_message(push) {
                    subscriber::deliver(&keys, &events, &message);
                }
                Ok::<(), ()>(())
            }
        };
        let (connection, subscriber) = connection::connect_lazy(config, on_push)?;
        let breaker = Arc::new(Breaker::new(
            config.redis_breaker_failures,
            Duration::from_millis(config.redis_breaker_cooldown_ms),
        ));
        Ok(Self {
            subscriber,
            connection,
            keys,
            timeout: config.redis_timeout(),
            breaker,
            events,
            metrics,
        })
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
        let result = self.bounded(future).await;
        guard.disarm();
        let transition = self.breaker.record(permit, result.is_ok(), Instant::now());
        self.metrics
            .redis_operation(operation, started.elapsed(), result.is_ok(), transition);
        if let Some(state) = transition {
            tracing::warn!(?state, "redis circuit breaker changed state");
        }
        result
    }

    /// Runs an operation other replicas wait on — releasing a fill lock,
    /// telling them a fill is over or entries are gone — even while the
    /// breaker is open: these run off the response path, and skipping one
    /// leaves the others waiting for the lock's TTL (a shard failing over
    /// opens the breaker while the lock's own shard is fine). Bounded by the
    /// timeout and counted in the metrics; the breaker is left as it is.
    async fn run_past_the_breaker<T>(
        &self,
        operation: &'static str,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = self.bounded(future).await;
        self.metrics
            .redis_operation(operation, started.elapsed(), result.is_ok(), None);
        result
    }

    /// The operation's result within `REDIS_TIMEOUT_MS`.
    async fn bounded<T>(
        &self,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_elapsed) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    async fn entry_names(&self, url: UrlKey) -> Result<Vec<String>, StoreError> {
        let mut connection = self.connection.clone();
        let mut names: Vec<String> = self
            .run("zrange", connection.zrange(self.keys.variants(url), 0, -1))
            .await?;
        names.push(self.keys.entry(EntryKey::url(url)));
        Ok(names)
    }

    async fn get_value(&self, name: &str) -> Result<Option<StoredValue>, StoreError> {
        let mut connection = self.connection.clone();
        let Some(bytes) = self
            .run("get", connection.get::<_, Option<Vec<u8>>>(name))
            .await?
        else {
            return Ok(None);
        };
        match StoredValue::decode(&Bytes::from(bytes)) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::warn!(key = name, %error, "unreadable cache value; treating it as a miss");
                Ok(None)
            }
        }
    }

    async fn put_entry(&self, write: &Write) -> Result<(), StoreError> {
        let seconds = write.ttl.as_secs().clamp(1, MAX_TTL_SECONDS);
        let now = unix_millis(SystemTime::now());
        let expires = now.saturating_add(seconds.saturating_mul(1000));
        let mut pipe = redis::pipe();
        // A member leaves its set when it expires; the set lives as long as
        // its longest-lived member (EXPIRE NX then GT; Redis >= 7).
        let add_to_set = |pipe: &mut redis::Pipeline, set: &str, member: &str| {
            pipe.zadd(set, member, expires)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(set)
                .arg("-inf")
                .arg(now)
                .ignore()
                .cmd("EXPIRE")
                .arg(set)
                .arg(seconds)
                .arg("NX")
                .ignore()
                .cmd("EXPIRE")
                .arg(set)
                .arg(seconds)
                .arg("GT")
                .ignore();
        };
        let url = write.key.url;
        let primary = self.keys.entry(EntryKey::url(url));
        let entry = self.keys.entry(write.key);
        if !write.vary.is_empty() {
            pipe.set_ex(
                &primary,
                StoredValue::encode_vary_index(&write.vary),
                seconds,
            )
            .ignore();
            add_to_set(&mut pipe, &self.keys.variants(url), &entry);
        }
        pipe.set_ex(&entry, write.entry.stored().encode(), seconds)
            .ignore();
        // A tag set is in its tag's slot: on a cluster, a pipeline of its own.
        let mut pipes = vec![pipe];
        for tag in &write.tags {
            if self.keys.cluster {
                pipes.push(redis::pipe());
            }
            if let Some(pipe) = pipes.last_mut() {
                add_to_set(pipe, &self.keys.tag(tag), &primary);
            }
        }
        let sent = pipes.iter().map(|pipe| {
            let mut connection = self.connection.clone();
            async move {
                self.run("store", pipe.query_async::<()>(&mut connection))
                    .await
            }
        });
        futures_util::future::try_join_all(sent).await.map(drop)
    }

    async fn invalidate_url(&self, url: UrlKey) -> Result<Vec<EntryKey>, StoreError> {
        let mut names = self.entry_names(url).await?;
        let keys = names.iter().filter_map(|n| self.keys.parse(n)).collect();
        names.push(self.keys.variants(url));
        let mut connection = self.connection.clone();
        let _removed: usize = self.run("del", connection.del(&names)).await?;
        Ok(keys)
    }

    async fn mark_url_stale(&self, url: UrlKey) -> Result<Vec<EntryKey>, StoreError> {
        let mut marked = Vec::new();
        for name in self.entry_names(url).await? {
            if let Some(StoredValue::Entry(mut stored)) = self.get_value(&name).await? {
                stored.lifetime_ms = 0;
                let mut connection = self.connection.clone();
                let set = redis::cmd("SET")
                    .arg(&name)
                    .arg(stored.encode())
                    .arg("KEEPTTL")
                    .arg("XX")
                    .clone();
                self.run("set", set.query_async::<Option<String>>(&mut connection))
                    .await?;
                marked.extend(self.keys.parse(&name));
            }
        }
        Ok(marked)
    }
}

impl SharedStore for RedisStore {
    fn get(&self, key: EntryKey) -> StoreFuture<'_, Option<StoredValue>> {
        Box::pin(async move { self.get_value(&self.keys.entry(key)).await })
    }

    fn put<'a>(&'a self, write: &'a Write) -> StoreFuture<'a, ()> {
        Box::pin(self.put_entry(write))
    }

    fn try_lock<'a>(
        &'a self,
        flight: EntryKey,
        token: &'a str,
        ttl: Duration,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let command = redis::cmd("SET")
                .arg(self.keys.lock(flight))
                .arg(token)
                .arg("NX")
                .arg("PX")
                .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                .clone();
            let reply: Option<String> = self
                .run("lock", command.query_async(&mut connection))
                .await?;
            Ok(reply.is_some())
        })
    }

    fn lock_remaining(&self, flight: EntryKey) -> StoreFuture<'_, Option<Duration>> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let millis: i64 = self
                .run("pttl", connection.pttl(self.keys.lock(flight)))
                .await?;
            Ok(u64::try_from(millis).ok().map(Duration::from_millis))
        })
    }

    fn unlock<'a>(&'a self, flight: EntryKey, token: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let script = redis::Script::new(UNLOCK);
            let mut invocation = script.key(self.keys.lock(flight));
            invocation.arg(token);
            self.run_past_the_breaker("unlock", invocation.invoke_async::<i64>(&mut connection))
                .await
                .map(drop)
        })
    }

    fn invalidate(&self, url: UrlKey) -> StoreFuture<'_, Vec<EntryKey>> {
        Box::pin(self.invalidate_url(url))
    }

    fn mark_stale(&self, url: UrlKey) -> StoreFuture<'_, Vec<EntryKey>> {
        Box::pin(self.mark_url_stale(url))
    }

    fn tagged<'a>(&'a self, tag: &'a Tag, cursor: u64) -> StoreFuture<'a, (Vec<UrlKey>, u64)> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let scan = redis::cmd("ZSCAN")
                .arg(self.keys.tag(tag))
                .arg(cursor)
                .arg("COUNT")
                .arg(TAG_PAGE)
                .clone();
            let (next, members): (u64, Vec<(String, f64)>) =
                self.run("zscan", scan.query_async(&mut connection)).await?;
            let urls = members
                .iter()
                .filter_map(|(name, _expiry)| self.keys.parse(name))
                .map(|key| key.url)
                .collect();
            Ok((urls, next))
        })
    }

    fn drop_tag<'a>(&'a self, tag: &'a Tag) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            self.run("del", connection.del::<_, usize>(self.keys.tag(tag)))
                .await
                .map(drop)
        })
    }

    fn publish<'a>(&'a self, event: &'a Event) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            let publish = redis::cmd(self.keys.publish_command())
                .arg(self.keys.channel_of(event))
                .arg(self.keys.message(event))
                .clone();
            self.run_past_the_breaker("publish", publish.query_async::<i64>(&mut connection))
                .await
                .map(drop)
        })
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn start(&self, stopped: CancellationToken) {
        subscriber::follow(
            self.subscriber.clone(),
            self.keys.clone(),
            self.events.clone(),
            stopped,
        );
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut connection = self.connection.clone();
            self.run(
                "ping",
                redis::cmd("PING").query_async::<String>(&mut connection),
            )
            .await
            .map(drop)
        })
    }

    fn breaker_state(&self) -> breaker::State {
        self.breaker.state()
    }
}
