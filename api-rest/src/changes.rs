//! Data changes, the moment they commit.
//!
//! The trigger on `air_quality_measurements` sends `NOTIFY air_quality_changed`
//! with the new data version when a transaction that changed rows commits.
//! A background task LISTENs and keeps the latest version; `GET /changes`
//! streams it as server-sent events (the version at once, then every change),
//! which every api-cache replica follows to retire what it stored before.
//!
//! Notifications sent while the listening connection is down are lost, so the
//! version is read again after every (re)connection.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// The channel the trigger notifies (postgres/init-script.sh).
pub const CHANNEL: &str = "air_quality_changed";

/// The latest data version known; `None` until first read.
#[derive(Debug, Clone)]
pub struct DataVersions {
    sender: watch::Sender<Option<i64>>,
}

impl Default for DataVersions {
    fn default() -> Self {
        Self {
            sender: watch::channel(None).0,
        }
    }
}

impl DataVersions {
    pub fn subscribe(&self) -> watch::Receiver<Option<i64>> {
        self.sender.subscribe()
    }

    /// Records `version` if it is newer than the one known.
    pub fn observe(&self, version: i64) {
        self.sender.send_if_modified(|known| {
            let newer = known.is_none_or(|k| version > k);
            if newer {
                *known = Some(version);
            }
            newer
        });
    }

    pub fn current(&self) -> Option<i64> {
        *self.sender.borrow()
    }
}

/// Listens until `stopped`, reconnecting (with backoff) while the database is away.
pub fn spawn_listener(store: Store, versions: DataVersions, stopped: CancellationToken) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(250);
        loop {
            tokio::select! {
                () = stopped.cancelled() => return,
                () = listen(&store, &versions, &stopped, &mut backoff) => {}
            }
            tokio::select! {
                () = stopped.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// One listening connection, until it is lost.
async fn listen(
    store: &Store,
    versions: &DataVersions,
    stopped: &CancellationToken,
    backoff: &mut Duration,
) {
    let mut listener = match PgListener::connect_with(store.pool()).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::debug!(%error, "cannot listen for data changes yet");
            return;
        }
    };
    if let Err(error) = listener.listen(CHANNEL).await {
        tracing::warn!(%error, "cannot LISTEN for data changes");
        return;
    }
    // Changes committed while nobody listened: read the version now.
    match store.current_version().await {
        Ok(version) => versions.observe(version),
        Err(error) => {
            tracing::warn!(%error, "cannot read the data version");
            return;
        }
    }
    tracing::info!(channel = CHANNEL, "listening for data changes");
    *backoff = Duration::from_millis(250);
    loop {
        let received = tokio::select! {
            () = stopped.cancelled() => return,
            received = listener.try_recv() => received,
        };
        match received {
            Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                Ok(version) => {
                    tracing::debug!(version, "data changed");
                    versions.observe(version);
                }
                Err(_) => tracing::warn!(
                    payload = notification.payload(),
                    "unexpected data-change payload"
                ),
            },
            Ok(None) => {
                tracing::warn!("the data-change listener lost its connection");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "the data-change listener failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_only_go_up() {
        let versions = DataVersions::default();
        assert_eq!(versions.current(), None);
        versions.observe(4);
        versions.observe(2);
        assert_eq!(versions.current(), Some(4));
    }
}
