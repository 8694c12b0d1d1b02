//! The read-through path: Redis first, then one origin request per key.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};

use super::AppState;
use crate::cache::coalesce::{Role, Waited};
use crate::cache::entry::StoredResponse;
use crate::cache::key::{CacheKey, NormalizedTarget};
use crate::error::ProxyError;
use crate::headers::end_to_end;
use crate::origin::{OriginBody, OriginError, OriginResponse};
use crate::store::Lookup;

/// What a leader hands to the requests that waited for it.
#[derive(Debug, Clone)]
pub enum Shared {
    /// The complete response (stored or not).
    Response(Arc<StoredResponse>),
    /// The origin failed: waiters answer the same error instead of retrying it.
    Failed(OriginError),
    /// The body was too large to hold: each waiter fetches on its own.
    NotShared,
}

/// How a response was produced, as told in `X-Cache` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From Redis.
    Hit,
    /// From the origin, Redis available.
    Miss,
    /// From the origin while another request for the same key fetched it.
    Collapsed,
    /// From the origin, Redis unavailable.
    Bypass,
}

impl Outcome {
    fn x_cache(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss | Self::Collapsed => "MISS",
            Self::Bypass => "BYPASS",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
        }
    }
}

pub(super) async fn proxy(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let head = method == Method::HEAD;
    if method != Method::GET && !head {
        return ProxyError::MethodNotAllowed(method).into_response();
    }
    let target = NormalizedTarget::new(uri.path(), uri.query());
    let key = CacheKey::new(&state.key_prefix, &target);

    let storage_available = match state.redis.get(&key).await {
        Lookup::Hit(entry) => {
            state.record(Outcome::Hit);
            return respond(&entry, Outcome::Hit, head, Some(age_of(&entry)));
        }
        Lookup::Miss => true,
        Lookup::Unavailable => false,
    };
    let miss = if storage_available {
        Outcome::Miss
    } else {
        Outcome::Bypass
    };

    match state.flights.join(key.clone()) {
        Role::Leader(leader) => {
            let result = state.origin.get(&target, &headers).await;
            state.record_origin(&result);
            let response = match result {
                Ok(response) => response,
                Err(error) => {
                    leader.complete(Shared::Failed(error.clone()));
                    state.record(miss);
                    return ProxyError::Origin(error).into_response();
                }
            };
            let Some(entry) = complete_entry(&response) else {
                leader.complete(Shared::NotShared);
                state.record(miss);
                return pass_through(response, miss, head);
            };
            if storage_available {
                store(&state, &key, &entry).await;
            }
            let entry = Arc::new(entry);
            leader.complete(Shared::Response(entry.clone()));
            state.record(miss);
            respond(&entry, miss, head, None)
        }
        Role::Follower(follower) => match follower.wait(state.coalesce_wait).await {
            Waited::Done(Shared::Response(entry)) => {
                let outcome = if storage_available {
                    Outcome::Collapsed
                } else {
                    Outcome::Bypass
                };
                state.record(outcome);
                respond(&entry, outcome, head, None)
            }
            Waited::Done(Shared::Failed(error)) => {
                state.record(miss);
                ProxyError::Origin(error).into_response()
            }
            Waited::Done(Shared::NotShared) | Waited::Abandoned | Waited::TimedOut => {
                fetch_alone(&state, &target, &headers, miss, head).await
            }
        },
        Role::Overflow => fetch_alone(&state, &target, &headers, miss, head).await,
    }
}

/// Fetches without coalescing and without storing (the last resort of waiters).
async fn fetch_alone(
    state: &AppState,
    target: &NormalizedTarget,
    headers: &HeaderMap,
    outcome: Outcome,
    head: bool,
) -> Response {
    let result = state.origin.get(target, headers).await;
    state.record_origin(&result);
    state.record(outcome);
    match result {
        Ok(response) => pass_through(response, outcome, head),
        Err(error) => ProxyError::Origin(error).into_response(),
    }
}

/// The response as an entry, if its body was read completely.
fn complete_entry(response: &OriginResponse) -> Option<StoredResponse> {
    match &response.body {
        OriginBody::Complete(body) => Some(StoredResponse {
            status: response.status.as_u16(),
            headers: end_to_end(&response.headers),
            body: body.clone(),
            stored_at: SystemTime::now(),
        }),
        OriginBody::TooLarge { .. } => None,
    }
}

/// Stores the entry if the policy allows; a Redis failure only costs the caching.
async fn store(state: &AppState, key: &CacheKey, entry: &StoredResponse) {
    match state.policy.ttl_for(entry.status, entry.body.len()) {
        Ok(ttl) => {
            if let Err(error) = state.redis.set(key, entry, ttl).await {
                tracing::warn!(%key, %error, "could not store the response");
            } else {
                state.record_stored(entry.body.len());
            }
        }
        Err(reason) => tracing::debug!(%key, ?reason, "response not stored"),
    }
}

/// Seconds since the origin produced the entry: the origin's own `Age` when it
/// was received, plus the time it has been stored.
fn age_of(entry: &StoredResponse) -> u64 {
    let received_age: u64 = entry
        .header("age")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let resident = SystemTime::now()
        .duration_since(entry.stored_at)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    received_age + resident
}

fn respond(entry: &StoredResponse, outcome: Outcome, head: bool, age: Option<u64>) -> Response {
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let body = if head {
        Body::empty()
    } else {
        Body::from(entry.body.clone())
    };
    let mut response = build(status, &entry.headers, body, outcome);
    let headers = response.headers_mut();
    if let Some(age) = age {
        headers.insert(header::AGE, HeaderValue::from(age));
    }
    if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
    }
    response
}

/// Streams a response that was not (or could not be) held in memory.
fn pass_through(response: OriginResponse, outcome: Outcome, head: bool) -> Response {
    let content_length = response.headers.get(header::CONTENT_LENGTH).cloned();
    let headers = end_to_end(&response.headers);
    let body = if head {
        Body::empty()
    } else {
        Body::from_stream(response.body.into_stream())
    };
    let mut out = build(response.status, &headers, body, outcome);
    if let Some(length) = content_length {
        out.headers_mut().insert(header::CONTENT_LENGTH, length);
    }
    out
}

fn build(
    status: StatusCode,
    headers: &[(String, String)],
    body: Body,
    outcome: Outcome,
) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            out.append(name, value);
        }
    }
    out.insert("x-cache", HeaderValue::from_static(outcome.x_cache()));
    response
}

impl AppState {
    fn record(&self, outcome: Outcome) {
        self.metrics.scope(|| {
            metrics::counter!("api_cache_requests_total", "outcome" => outcome.label())
                .increment(1);
        });
    }

    fn record_origin(&self, result: &Result<OriginResponse, OriginError>) {
        let status = match result {
            Ok(response) => response.status.as_str().to_owned(),
            Err(OriginError::Timeout(_)) => "timeout".to_owned(),
            Err(_) => "error".to_owned(),
        };
        self.metrics.scope(|| {
            metrics::counter!("api_cache_origin_requests_total", "status" => status).increment(1);
        });
    }

    fn record_stored(&self, bytes: usize) {
        self.metrics.scope(|| {
            metrics::counter!("api_cache_stored_total").increment(1);
            metrics::histogram!("api_cache_stored_body_bytes").record(bytes as f64);
        });
    }
}
