//! Following the origin's data-change feed: `BACKEND_CHANGES_PATH` (api-rest's
//! `/changes`) streams the data version as server-sent events; every replica
//! keeps the highest version seen. Entries stored under an older version are
//! outdated at once, whatever their TTL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// No event (not even a keep-alive) for this long means the feed is dead.
const SILENCE: Duration = Duration::from_secs(30);

/// The data version this replica knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    pub(crate) fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// Raises the known version; never lowers it.
    pub(crate) fn observe(&self, version: u64) -> bool {
        self.0.fetch_max(version, Ordering::AcqRel) < version
    }
}

/// Follows `url` until `stopped`, reconnecting after failures.
pub(crate) fn spawn_follower(url: String, generation: Generation, stopped: CancellationToken) {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(2))
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the change-feed client");
                return;
            }
        };
        loop {
            let pause = tokio::select! {
                () = stopped.cancelled() => return,
                pause = follow(&client, &url, &generation) => pause,
            };
            tokio::select! {
                () = stopped.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    });
}

/// One connection; returns how long to wait before the next.
async fn follow(client: &reqwest::Client, url: &str, generation: &Generation) -> Duration {
    let mut response = match client
        .get(url)
        .header("accept", "text/event-stream")
        .send()
        .await
    {
        Ok(response) if response.status().is_success() => response,
        Ok(response) => {
            // The origin has no feed: check again now and then.
            tracing::debug!(status = %response.status(), %url, "no change feed at the origin");
            return Duration::from_secs(30);
        }
        Err(error) => {
            tracing::debug!(%error, %url, "cannot reach the change feed");
            return Duration::from_secs(1);
        }
    };
    tracing::info!(%url, "following the origin's change feed");
    let mut pending = String::new();
    loop {
        let chunk = match tokio::time::timeout(SILENCE, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => {
                tracing::info!(%url, "the change feed ended; reconnecting");
                return Duration::from_millis(500);
            }
        };
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Some(version) = line
                .trim()
                .strip_prefix("data:")
                .and_then(|v| v.trim().parse::<u64>().ok())
                && generation.observe(version)
            {
                tracing::debug!(version, "origin data changed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generation_only_goes_up() {
        let generation = Generation::default();
        assert!(generation.observe(5));
        assert!(!generation.observe(3));
        assert!(!generation.observe(5));
        assert_eq!(generation.current(), 5);
    }
}
