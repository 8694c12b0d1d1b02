//! Every path but the service's own: GET and HEAD are read through the cache
//! ([`read`]); other methods go to the origin as they are, and a successful one
//! invalidates what is stored for its URL ([`write`]). [`respond`] builds the
//! responses, with `Age`, `Cache-Status` and `X-Cache`.

mod read;
mod respond;
mod write;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::response::Response;
use http::{HeaderMap, Method, Uri};

use super::AppState;
use crate::cache::entry::StoredResponse;
use crate::cache::status::Forward;
use crate::origin::OriginError;

pub(super) async fn proxy(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if method == Method::GET || method == Method::HEAD {
        read::serve(
            &state,
            read::ReadRequest::new(&state, &method, &uri, headers, peer.ip()),
        )
        .await
    } else {
        write::forward(&state, method, &uri, headers, body, peer.ip()).await
    }
}

/// A response fetched for the cache, as handed to the requests that waited for it.
#[derive(Debug)]
pub struct Fetched {
    pub entry: StoredResponse,
    /// 200 for a new body, 304 for a revalidated one.
    pub origin_status: u16,
    pub forward: Forward,
    pub stored: Stored,
    /// Fetched and stored by another replica while this one waited.
    pub from_peer: bool,
}

/// What became of a fetched response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Yes {
        ttl_seconds: i64,
    },
    No(crate::cache::policy::NotStored),
    /// Redis was unavailable, or failed to take it.
    Unavailable,
}

/// What a leader hands to the requests that waited for it.
#[derive(Debug, Clone)]
pub enum Shared {
    Fetched(Arc<Fetched>),
    /// The origin failed: waiters answer the same error instead of retrying it.
    Failed(OriginError),
    /// Nothing to share (a body too large to hold): each waiter fetches alone.
    NotShared,
}

/// How a response was produced, for `X-Cache` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache, fresh.
    Hit,
    /// From the cache, stale (the request's `max-stale` allowed it).
    Stale,
    /// From the origin (a new body).
    Miss,
    /// From the cache after the origin answered 304.
    Revalidated,
    /// From the origin, fetched by a concurrent identical request.
    Collapsed,
    /// The cache was not used: unavailable, or the request not cacheable.
    Bypass,
    /// Another method, passed to the origin.
    Pass,
    /// The origin failed.
    Error,
}

impl Outcome {
    pub fn x_cache(self) -> &'static str {
        match self {
            Self::Hit | Self::Stale => "HIT",
            Self::Miss | Self::Revalidated | Self::Collapsed | Self::Error => "MISS",
            Self::Bypass | Self::Pass => "BYPASS",
        }
    }

    pub const ALL: [Outcome; 8] = [
        Self::Hit,
        Self::Stale,
        Self::Miss,
        Self::Revalidated,
        Self::Collapsed,
        Self::Bypass,
        Self::Pass,
        Self::Error,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Miss => "miss",
            Self::Revalidated => "revalidated",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
            Self::Pass => "pass",
            Self::Error => "error",
        }
    }
}

impl AppState {
    fn record(&self, outcome: Outcome) {
        self.metrics.scope(|| {
            metrics::counter!("api_cache_requests_total", "outcome" => outcome.label())
                .increment(1);
        });
    }

    /// Counts an origin request by status (or `timeout`/`error`) with its time to headers.
    fn record_origin(
        &self,
        result: Result<http::StatusCode, &OriginError>,
        elapsed: std::time::Duration,
    ) {
        let status = match result {
            Ok(status) => status.as_str().to_owned(),
            Err(OriginError::Timeout(_)) => "timeout".to_owned(),
            Err(_) => "error".to_owned(),
        };
        self.metrics.scope(|| {
            metrics::counter!("api_cache_origin_requests_total", "status" => status.clone())
                .increment(1);
            metrics::histogram!("api_cache_origin_request_duration_seconds", "status" => status)
                .record(elapsed.as_secs_f64());
        });
    }
}
