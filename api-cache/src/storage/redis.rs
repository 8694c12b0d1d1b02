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
//! - `K:variants`: the variant keys;
//! - `<entry key>:lock`: held by the replica filling that entry (`SET NX PX`).
//!
//! Tag sets, for purges without scanning: `<prefix>:tag:path:<path prefix>`,
//! `<prefix>:tag:key:<surrogate key>` and `<prefix>:tag:any-key`, each the
//! URL keys tagged. Tag and variant sets are sorted sets scored by each
//! member's expiry: every write drops the members that expired, so a set
//! holds live entries only, and expires with its last one.
//! Replicas' events are pub/sub messages on `<prefix>:events`:
//! `filled <entry key>` and `invalidated <entry key> ...`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use secrecy::ExposeSecret;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

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
    client: redis::Client,
    connection: ConnectionManager,
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
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The names of keys under `CACHE_KEY_PREFIX`.
#[derive(Debug, Clone)]
struct Keyspace {
    prefix: Arc<str>,
}

impl Keyspace {
    fn entry(&self, key: EntryKey) -> String {
        format!("{}:{key}", self.prefix)
    }

    fn lock(&self, key: EntryKey) -> String {
        format!("{}:{key}:lock", self.prefix)
    }

    fn variants(&self, url: UrlKey) -> String {
        format!("{}:{}:variants", self.prefix, EntryKey::url(url))
    }

    fn tag(&self, tag: &Tag) -> String {
        match tag {
            Tag::Path(path) => format!("{}:tag:path:{path}", self.prefix),
            Tag::SurrogateKey(key) => format!("{}:tag:key:{key}", self.prefix),
            Tag::AnyKey => format!("{}:tag:any-key", self.prefix),
        }
    }

    fn channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// The entry key a stored name stands for: `<prefix>:<hex>[:v:<hex>]`.
    fn parse(&self, name: &str) -> Option<EntryKey> {
        let rest = name.strip_prefix(&*self.prefix)?.strip_prefix(':')?;
        let hex = |s: &str| (s.len() == 32).then(|| u128::from_str_radix(s, 16).ok())?;
        let (url, variant) = match rest.split_once(":v:") {
            Some((url, variant)) => (url, Some(hex(variant)?)),
            None => (rest, None),
        };
        Some(EntryKey {
            url: UrlKey::from_digest(hex(url)?),
            variant,
        })
    }

    fn message(&self, event: &Event) -> String {
        match event {
            Event::Filled(key) => format!("filled {}", self.entry(*key)),
            Event::Invalidated(keys) => {
                keys.iter().fold("invalidated".to_owned(), |mut text, key| {
                    text.push(' ');
                    text.push_str(&self.entry(*key));
                    text
                })
            }
        }
    }

    fn event(&self, message: &str) -> Option<Event> {
        let mut words = message.split(' ');
        match words.next()? {
            "filled" => Some(Event::Filled(self.parse(words.next()?)?)),
            "invalidated" => Some(Event::Invalidated(
                words.filter_map(|w| self.parse(w)).collect(),
            )),
            _ => None,
        }
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
        Ok(Self {
            client,
            connection,
            keys: Keyspace {
                prefix: Arc::from(config.cache_key_prefix.as_str()),
            },
            timeout,
            breaker,
            events: broadcast::channel(1024).0,
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
        let result = match tokio::time::timeout(self.timeout, future).await {
            Ok(result) => result.map_err(StoreError::from),
            Err(_elapsed) => Err(StoreError::Timeout(self.timeout)),
        };
        guard.disarm();
        let transition = self.breaker.record(permit, result.is_ok(), Instant::now());
        self.metrics
            .redis_operation(operation, started.elapsed(), result.is_ok(), transition);
        if let Some(state) = transition {
            tracing::warn!(?state, "redis circuit breaker changed state");
        }
        result
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
        for tag in &write.tags {
            add_to_set(&mut pipe, &self.keys.tag(tag), &primary);
        }
        let mut connection = self.connection.clone();
        self.run("store", pipe.query_async::<()>(&mut connection))
            .await
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

    /// Follows `<prefix>:events` until `stopped`, reconnecting after failures;
    /// while it is down, waiters fall back on their bounded waits.
    fn follow_events(&self, stopped: CancellationToken) {
        let (client, keys, events) = (self.client.clone(), self.keys.clone(), self.events.clone());
        tokio::spawn(async move {
            let channel = keys.channel();
            let mut backoff = Duration::from_millis(200);
            loop {
                let connection = tokio::select! {
                    () = stopped.cancelled() => return,
                    connection = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub()) => connection,
                };
                match connection {
                    Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            tracing::debug!(%channel, "subscribed to cache events");
                            backoff = Duration::from_millis(200);
                            let mut messages = pubsub.on_message();
                            loop {
                                let message = tokio::select! {
                                    () = stopped.cancelled() => return,
                                    message = messages.next() => message,
                                };
                                let Some(message) = message else { break };
                                match message
                                    .get_payload::<String>()
                                    .ok()
                                    .and_then(|m| keys.event(&m))
                                {
                                    // Nobody listening is fine.
                                    Some(event) => drop(events.send(event)),
                                    None => tracing::debug!("unknown cache event"),
                                }
                            }
                            tracing::warn!(%channel, "cache events subscription ended; reconnecting");
                        }
                        Err(error) => tracing::debug!(%error, "cannot subscribe to cache events"),
                    },
                    Ok(Err(error)) => tracing::debug!(%error, "cannot connect for cache events"),
                    Err(_elapsed) => tracing::debug!("connecting for cache events timed out"),
                }
                tokio::select! {
                    () = stopped.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
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
            self.run("unlock", invocation.invoke_async::<i64>(&mut connection))
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
            let message = self.keys.message(event);
            self.run(
                "publish",
                connection.publish::<_, _, i64>(self.keys.channel(), message),
            )
            .await
            .map(drop)
        })
    }

    fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn start(&self, stopped: CancellationToken) {
        self.follow_events(stopped);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::target::Target;

    #[test]
    fn names_and_events_round_trip() {
        let keys = Keyspace {
            prefix: Arc::from("api-cache"),
        };
        let url = UrlKey::of(&Target::parse("/air_quality", None).unwrap());
        assert_eq!(
            keys.entry(EntryKey::url(url)),
            "api-cache:b3231c75c1834b123a585db254cb22c0"
        );
        let variant = EntryKey::variant(url, 7);
        assert_eq!(keys.parse(&keys.entry(variant)), Some(variant));
        assert_eq!(keys.parse(&keys.variants(url)), None);
        assert_eq!(keys.parse("other:b3231c75c1834b123a585db254cb22c0"), None);
        for event in [
            Event::Filled(variant),
            Event::Invalidated(vec![EntryKey::url(url), variant]),
        ] {
            assert_eq!(keys.event(&keys.message(&event)), Some(event));
        }
        assert_eq!(keys.event("nonsense"), None);
    }
}
