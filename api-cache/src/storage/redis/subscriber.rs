//! Following the replicas' events until shutdown, reconnecting after
//! failures; while it is down, waiters fall back on their bounded waits and
//! local copies on their bounded life.

use std::time::Duration;

use futures_util::StreamExt;
use redis::cluster::ClusterClient;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::connection::Subscriber;
use super::keyspace::Keyspace;
use crate::storage::Event;

/// Forwards one message to this process' listeners.
pub(super) fn deliver(keys: &Keyspace, events: &broadcast::Sender<Event>, message: &str) {
    match keys.event(message) {
        // Nobody listening is fine.
        Some(event) => drop(events.send(event)),
        None => tracing::debug!("unknown cache event"),
    }
}

/// A cluster's sharded messages, as the cluster client pushes them: `[channel, payload]`.
pub(super) fn sharded_message(push: redis::PushInfo) -> Option<String> {
    if push.kind != redis::PushKind::SMessage {
        return None;
    }
    let payload = push.data.into_iter().nth(1)?;
    redis::from_redis_value::<String>(payload).ok()
}

pub(super) fn follow(
    subscriber: Subscriber,
    keys: Keyspace,
    events: broadcast::Sender<Event>,
    stopped: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let followed = match &subscriber {
                Subscriber::Single(client) => follow_node(client, &keys, &events, &stopped).await,
                Subscriber::Cluster(client) => follow_cluster(client, &keys, &stopped).await,
            };
            if stopped.is_cancelled() {
                return;
            }
            if followed {
                backoff = Duration::from_millis(200);
            }
            tokio::select! {
                () = stopped.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// The connection `connecting` makes, within 5 s and before shutdown;
/// `None` (logged) when it fails.
async fn connect<T>(
    connecting: impl Future<Output = redis::RedisResult<T>>,
    stopped: &CancellationToken,
) -> Option<T> {
    let connection = tokio::select! {
        () = stopped.cancelled() => return None,
        connection = tokio::time::timeout(Duration::from_secs(5), connecting) => connection,
    };
    match connection {
        Ok(Ok(connection)) => Some(connection),
        Ok(Err(error)) => {
            tracing::debug!(%error, "cannot connect for cache events");
            None
        }
        Err(_elapsed) => {
            tracing::debug!("connecting for cache events timed out");
            None
        }
    }
}

/// Subscribes on one node and delivers until the subscription ends; `true`
/// if it was subscribed for a while.
async fn follow_node(
    client: &redis::Client,
    keys: &Keyspace,
    events: &broadcast::Sender<Event>,
    stopped: &CancellationToken,
) -> bool {
    let channels = keys.channels();
    let Some(mut pubsub) = connect(client.get_async_pubsub(), stopped).await else {
        return false;
    };
    if let Err(error) = pubsub.subscribe(&channels).await {
        tracing::debug!(%error, "cannot subscribe to cache events");
        return false;
    }
    tracing::debug!(?channels, "subscribed to cache events");
    let mut messages = pubsub.on_message();
    loop {
        let message = tokio::select! {
            () = stopped.cancelled() => return true,
            message = messages.next() => message,
        };
        let Some(message) = message else { break };
        match message.get_payload::<String>() {
            Ok(text) => deliver(keys, events, &text),
            Err(_) => tracing::debug!("unreadable cache event"),
        }
    }
    tracing::warn!(?channels, "cache events subscription ended; reconnecting");
    true
}

/// Subscribes to every sharded channel of a cluster and holds the
/// connection until shutdown: the cluster client delivers the messages (see
/// `sharded_message`) and subscribes again by itself after a failover.
async fn follow_cluster(
    client: &ClusterClient,
    keys: &Keyspace,
    stopped: &CancellationToken,
) -> bool {
    let channels = keys.channels();
    let Some(mut connection) = connect(client.get_async_connection(), stopped).await else {
        return false;
    };
    // One by one: the channels are in different slots.
    for channel in &channels {
        if let Err(error) = connection.ssubscribe(channel).await {
            tracing::debug!(%error, %channel, "cannot subscribe to cache events");
            return false;
        }
    }
    tracing::debug!(
        channels = channels.len(),
        "subscribed to sharded cache events"
    );
    stopped.cancelled().await;
    true
}
