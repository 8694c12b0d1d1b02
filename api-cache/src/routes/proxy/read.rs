//! GET and HEAD through the cache (RFC 9111): serve a stored response while it
//! may be reused, revalidate it with the origin when it may not, fetch and
//! store otherwise; concurrent identical fetches share one origin request.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, Uri, header};

use super::respond::{self, Served};
use super::{Fetched, Outcome, Shared, Stored};
use crate::cache::coalesce::{Role, Waited};
use crate::cache::directives::CacheControl;
use crate::cache::encoding::{Encoding, MIN_COMPRESS_BYTES, gunzip, gzip, is_compressible};
use crate::cache::entry::StoredResponse;
use crate::cache::freshness::{Reuse, Timing, reuse};
use crate::cache::key::{CacheKey, NormalizedTarget};
use crate::cache::policy::{NotStored, RequestFacts};
use crate::cache::revalidate::{conditional_headers, refreshed};
use crate::cache::status::{CacheStatus, Forward};
use crate::cache::vary::{Vary, request_values};
use crate::headers::{Forwarding, end_to_end, to_origin};
use crate::origin::{OriginBody, OriginError, OriginResponse};
use crate::routes::AppState;
use crate::store::Lookup;

/// A GET or HEAD, with what the cache needs to know of it.
#[derive(Debug)]
pub(super) struct ReadRequest {
    pub(super) target: NormalizedTarget,
    pub(super) primary: CacheKey,
    pub(super) headers: HeaderMap,
    pub(super) cache_control: CacheControl,
    /// `Authorization` or `Cookie`: never answered with what another client fetched.
    pub(super) credentials: bool,
    pub(super) head: bool,
    pub(super) peer: IpAddr,
}

impl ReadRequest {
    pub(super) fn new(
        state: &AppState,
        method: &Method,
        uri: &Uri,
        headers: HeaderMap,
        peer: IpAddr,
    ) -> Self {
        let target = NormalizedTarget::new(uri.path(), uri.query());
        Self {
            primary: CacheKey::new(&state.key_prefix, &target),
            target,
            cache_control: CacheControl::from_headers(&headers),
            credentials: headers.contains_key(header::AUTHORIZATION)
                || headers.contains_key(header::COOKIE),
            head: *method == Method::HEAD,
            headers,
            peer,
        }
    }

    fn facts(&self) -> RequestFacts {
        RequestFacts {
            cache_control: self.cache_control.clone(),
            credentials: self.credentials,
        }
    }
}

/// Whether Redis took part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    Available,
    Unavailable,
}

pub(super) async fn serve(state: &AppState, request: ReadRequest) -> Response {
    if request.cache_control.no_store {
        // Neither answered from nor stored in the cache.
        return fetch_alone(state, &request, None, Forward::Request, Storage::Available).await;
    }
    let (stored, forward, flight, storage) =
        match state.redis.lookup(&request.primary, &request.headers).await {
            Lookup::Found(entry) => (
                Some(entry),
                Forward::Stale,
                request.primary.clone(),
                Storage::Available,
            ),
            Lookup::Absent { vary_miss, flight } => {
                let forward = if vary_miss {
                    Forward::VaryMiss
                } else {
                    Forward::UriMiss
                };
                (None, forward, flight, Storage::Available)
            }
            Lookup::Unavailable => (
                None,
                Forward::Miss,
                request.primary.clone(),
                Storage::Unavailable,
            ),
        };

    if let Some(entry) = stored {
        if request.credentials && !entry.shared_with_credentials {
            return fetch_alone(state, &request, None, Forward::Bypass, storage).await;
        }
        let age = entry.timing.current_age(SystemTime::now());
        let lifetime = entry.lifetime();
        match reuse(
            lifetime,
            age,
            &entry.cache_control(),
            &request.cache_control,
        ) {
            Reuse::Fresh { remaining } => {
                state.record(Outcome::Hit);
                let status = CacheStatus::hit(whole_seconds(remaining));
                return respond::entry(
                    &entry,
                    &request,
                    Served {
                        status,
                        outcome: Outcome::Hit,
                    },
                );
            }
            Reuse::Stale { by } => {
                state.record(Outcome::Stale);
                let status = CacheStatus::hit(-whole_seconds(by));
                return respond::entry(
                    &entry,
                    &request,
                    Served {
                        status,
                        outcome: Outcome::Stale,
                    },
                );
            }
            Reuse::Revalidate => {
                // Still fresh, yet the request insists: its own directives sent it forward.
                let forward = if lifetime > age {
                    Forward::Request
                } else {
                    Forward::Stale
                };
                let flight = if entry.vary.is_empty() {
                    request.primary.clone()
                } else {
                    crate::cache::vary::variant_key(&request.primary, &entry.vary)
                };
                return fill(state, &request, Some(entry), forward, flight, storage).await;
            }
        }
    }
    if request.cache_control.only_if_cached {
        let mut status = CacheStatus::forward(forward);
        status.detail = Some("only-if-cached");
        return respond::problem(
            StatusCode::GATEWAY_TIMEOUT,
            "The request asked for a stored response only, and none is stored.",
            &status,
            Outcome::Bypass,
        );
    }
    if request.credentials {
        // Never share a fetch made with someone's credentials.
        return fetch_alone(state, &request, None, forward, storage).await;
    }
    fill(state, &request, None, forward, flight, storage).await
}

fn whole_seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

/// Fetches (or revalidates) once for all concurrent identical requests.
async fn fill(
    state: &AppState,
    request: &ReadRequest,
    stored: Option<StoredResponse>,
    forward: Forward,
    flight: CacheKey,
    storage: Storage,
) -> Response {
    match state.flights.join(flight) {
        Role::Leader(leader) => {
            match fetch(state, request, stored.as_ref(), forward, storage).await {
                Ok(Fetch::Entry(fetched)) => {
                    leader.complete(Shared::Fetched(fetched.clone()));
                    served(state, &fetched, request, false)
                }
                Ok(Fetch::Stream(response)) => {
                    leader.complete(Shared::NotShared);
                    state.record(Outcome::Miss);
                    let status = stream_status(forward, response.status.as_u16());
                    respond::stream(
                        *response,
                        request.head,
                        Served {
                            status,
                            outcome: Outcome::Miss,
                        },
                    )
                }
                Err(error) => {
                    leader.complete(Shared::Failed(error.clone()));
                    origin_failed(state, error, forward)
                }
            }
        }
        Role::Follower(follower) => match follower.wait(state.coalesce_wait).await {
            Waited::Done(Shared::Fetched(fetched))
                if same_variant(&fetched.entry, &request.headers) =>
            {
                served(state, &fetched, request, true)
            }
            Waited::Done(Shared::Failed(error)) => origin_failed(state, error, forward),
            _ => fetch_alone(state, request, stored, forward, storage).await,
        },
        Role::Overflow => fetch_alone(state, request, stored, forward, storage).await,
    }
}

/// Whether a response fetched for another request suits this one too (Vary).
fn same_variant(entry: &StoredResponse, headers: &HeaderMap) -> bool {
    let names: Vec<String> = entry.vary.iter().map(|(name, _)| name.clone()).collect();
    request_values(&names, headers) == entry.vary
}

/// Fetches for this request only (no coalescing), storing what may be stored.
async fn fetch_alone(
    state: &AppState,
    request: &ReadRequest,
    stored: Option<StoredResponse>,
    forward: Forward,
    storage: Storage,
) -> Response {
    match fetch(state, request, stored.as_ref(), forward, storage).await {
        Ok(Fetch::Entry(fetched)) => served(state, &fetched, request, false),
        Ok(Fetch::Stream(response)) => {
            let outcome = if forward == Forward::Bypass || forward == Forward::Request {
                Outcome::Bypass
            } else {
                Outcome::Miss
            };
            state.record(outcome);
            let status = stream_status(forward, response.status.as_u16());
            respond::stream(*response, request.head, Served { status, outcome })
        }
        Err(error) => origin_failed(state, error, forward),
    }
}

/// Answers from a fetched (or revalidated) entry.
fn served(state: &AppState, fetched: &Fetched, request: &ReadRequest, collapsed: bool) -> Response {
    let outcome = match (collapsed, fetched.origin_status, fetched.stored) {
        (true, _, _) => Outcome::Collapsed,
        (_, 304, _) => Outcome::Revalidated,
        (_, _, Stored::Unavailable) => Outcome::Bypass,
        _ => Outcome::Miss,
    };
    state.record(outcome);
    let mut status = CacheStatus::forward(fetched.forward);
    status.forward_status = Some(fetched.origin_status);
    status.collapsed = collapsed;
    match fetched.stored {
        Stored::Yes { ttl_seconds } => {
            status.stored = true;
            status.ttl = Some(ttl_seconds);
        }
        Stored::No(reason) => status.detail = Some(reason.detail()),
        Stored::Unavailable => status.detail = Some("storage-unavailable"),
    }
    respond::entry(&fetched.entry, request, Served { status, outcome })
}

fn stream_status(forward: Forward, origin_status: u16) -> CacheStatus {
    let mut status = CacheStatus::forward(forward);
    status.forward_status = Some(origin_status);
    status.detail = Some(NotStored::TooLarge.detail());
    status
}

fn origin_failed(state: &AppState, error: OriginError, forward: Forward) -> Response {
    state.record(Outcome::Error);
    let mut status = CacheStatus::forward(forward);
    status.detail = Some(match error {
        OriginError::Timeout(_) => "origin-timeout",
        _ => "origin-unreachable",
    });
    respond::origin_error(error, &status)
}

enum Fetch {
    Entry(Arc<Fetched>),
    /// Not held in memory (too large, or a content coding this cache cannot read).
    Stream(Box<OriginResponse>),
}

/// One request to the origin: a plain GET, or a conditional one when a stored
/// response can be revalidated. Stores the result when the policy allows.
async fn fetch(
    state: &AppState,
    request: &ReadRequest,
    stored: Option<&StoredResponse>,
    forward: Forward,
    storage: Storage,
) -> Result<Fetch, OriginError> {
    let mut headers = to_origin(&request.headers, Some(request.peer), Forwarding::Fill);
    if let Some(stored) = stored {
        headers.extend(conditional_headers(stored));
    }
    let result = state.origin.get(&request.target, headers).await;
    state.record_origin(result.as_ref().map(|r| r.status));
    let response = result?;

    if response.status == StatusCode::NOT_MODIFIED
        && let Some(stored) = stored
    {
        let entry = refreshed(
            stored,
            &response.headers,
            response.request_time,
            response.response_time,
            &state.policy,
        );
        let (entry, stored) = persist(state, request, entry, true, storage).await;
        return Ok(Fetch::Entry(Arc::new(Fetched {
            entry,
            origin_status: 304,
            forward,
            stored,
        })));
    }
    let OriginBody::Complete(body) = &response.body else {
        return Ok(Fetch::Stream(Box::new(response)));
    };
    let Some(entry) = new_entry(state, request, &response, body.clone()) else {
        return Ok(Fetch::Stream(Box::new(response)));
    };
    let origin_status = response.status.as_u16();
    let (entry, stored) = persist(state, request, entry, stored.is_some(), storage).await;
    Ok(Fetch::Entry(Arc::new(Fetched {
        entry,
        origin_status,
        forward,
        stored,
    })))
}

/// The entry for a complete origin response: end-to-end headers, the clocks,
/// the body gzip-compressed when that pays. `None` for a content coding this
/// cache cannot decode (passed through instead).
fn new_entry(
    state: &AppState,
    request: &ReadRequest,
    response: &OriginResponse,
    body: bytes::Bytes,
) -> Option<StoredResponse> {
    let origin_encoding = Encoding::from_response(&response.headers)?;
    let identity_length = match origin_encoding {
        Encoding::Identity => body.len(),
        Encoding::Gzip => gunzip(&body, state.policy.max_body_bytes).ok()?.len(),
    };
    let headers: Vec<(String, String)> = end_to_end(&response.headers)
        .into_iter()
        .filter(|(name, _)| !matches!(name.as_str(), "content-encoding" | "age"))
        .collect();
    let content_type = response
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let (body, encoding) = if state.policy.compress
        && origin_encoding == Encoding::Identity
        && body.len() >= MIN_COMPRESS_BYTES
        && is_compressible(content_type)
        && !CacheControl::from_headers(&response.headers).no_transform
    {
        (gzip(&body), Encoding::Gzip)
    } else {
        (body, origin_encoding)
    };
    let timing = Timing::from_response(
        response.request_time,
        response.response_time,
        &response.headers,
    );
    let vary_names = Vary::from_headers(&response.headers);
    Some(StoredResponse {
        status: response.status.as_u16(),
        headers,
        body,
        encoding,
        identity_length: identity_length as u64,
        timing,
        lifetime_ms: 0,
        vary: request_values(vary_names.names(), &request.headers),
        shared_with_credentials: false,
    })
}

/// Applies the storage policy and writes the entry to Redis when allowed.
/// `replaces` tells that a stored response was revalidated: if the new answer
/// may not be stored, the old one is removed too.
async fn persist(
    state: &AppState,
    request: &ReadRequest,
    mut entry: StoredResponse,
    replaces: bool,
    storage: Storage,
) -> (StoredResponse, Stored) {
    let decision = state.policy.storable(
        &request.facts(),
        entry.status,
        &entry.header_map(),
        usize::try_from(entry.identity_length).unwrap_or(usize::MAX),
        &entry.timing,
    );
    let terms = match decision {
        Ok(terms) => terms,
        Err(reason) => {
            tracing::debug!(key = %request.primary, ?reason, "response not stored");
            if replaces
                && storage == Storage::Available
                && let Err(error) = state.redis.invalidate(&request.primary).await
            {
                tracing::warn!(key = %request.primary, %error, "could not remove a response that may no longer be stored");
            }
            return (entry, Stored::No(reason));
        }
    };
    entry.lifetime_ms = u64::try_from(terms.lifetime.duration().as_millis()).unwrap_or(u64::MAX);
    entry.shared_with_credentials = terms.shared_with_credentials;
    if storage == Storage::Unavailable {
        return (entry, Stored::Unavailable);
    }
    let result = state
        .redis
        .store(&request.primary, &entry, &terms.vary, terms.redis_ttl)
        .await;
    state.record_stored(&result, entry.body.len());
    let stored = match result {
        Ok(()) => {
            let remaining = entry
                .lifetime()
                .saturating_sub(entry.timing.current_age(SystemTime::now()));
            Stored::Yes {
                ttl_seconds: whole_seconds(remaining),
            }
        }
        Err(error) => {
            tracing::warn!(key = %request.primary, %error, "could not store the response");
            Stored::Unavailable
        }
    };
    (entry, stored)
}
