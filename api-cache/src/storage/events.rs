//! Messages between replicas, on the Redis pub/sub channel `<prefix>:events`:
//! - `filled <key>`: a replica stored the response others wait for;
//! - `invalidated <key> ...`: those keys were purged; drop local copies.
//!
//! One subscription per process, reconnected after failures; while it is down,
//! waiters fall back on their bounded waits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::local::LocalCache;

pub(super) fn filled(key: &str) -> String {
    format!("filled {key}")
}

pub(super) fn invalidated(keys: &[String]) -> String {
    format!("invalidated {}", keys.join(" "))
}

/// Follows the channel until `stopped`.
pub(super) fn spawn_listener(
    client: redis::Client,
    channel: Arc<str>,
    local: LocalCache,
    fills: broadcast::Sender<Arc<str>>,
    stopped: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let connection = tokio::select! {
                () = stopped.cancelled() => return,
                connection = tokio::time::timeout(Duration::from_secs(5), client.get_async_pubsub()) => connection,
            };
            match connection {
                Ok(Ok(mut pubsub)) => match pubsub.subscribe(&*channel).await {
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
                            let Ok(text) = message.get_payload::<String>() else {
                                continue;
                            };
                            dispatch(&text, &local, &fills);
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

fn dispatch(text: &str, local: &LocalCache, fills: &broadcast::Sender<Arc<str>>) {
    let mut words = text.split(' ');
    match words.next() {
        Some("filled") => {
            if let Some(key) = words.next() {
                // Nobody waiting is fine.
                let _ = fills.send(Arc::from(key));
            }
        }
        Some("invalidated") => words.for_each(|key| local.remove(key)),
        _ => tracing::debug!(message = text, "unknown cache event"),
    }
}
