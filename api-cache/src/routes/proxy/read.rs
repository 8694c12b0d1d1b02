//! GET and HEAD through the cache (RFC 9111, RFC 5861).
//!
//! 1. A fresh copy in the local tier answers at once; else Redis is asked.
//! 2. A stored response is served while fresh (and while the client's
//!    `max-stale`, or a stale-while-revalidate window, allows, refreshing it in
//!    the background); an entry older than the origin's last data change, or
//!    stale, is revalidated.
//! 3. A fetch is made once per key: in this process (single-flight), and across
//!    replicas (a Redis lock; the others wait for its `filled` message).
//! 4. When the origin fails, a stale entry still within its stale-if-error
//!    window (the grace period by default) is served instead of the error.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use tokio::sync::broadcast::error::RecvError;

use super::respond::{self, Served};
use super::{Fetched, Outcome, Shared, Stored};
use crate::cache::coalesce::{Role, Waited};
use crate::cache::directives::CacheControl;
use crate::cache::encoding::{Encoding, MIN_COMPRESS_BYTES, gunzip, gzip, is_compressible};
use crate::cache::entry::StoredResponse;
use crate::cache::freshness::{
    Reuse, Timing, reuse, stale_if_error_window, stale_while_revalidate_window,
};
use crate::cache::key::{CacheKey, NormalizedTarget, path_prefixes};
use crate::cache::policy::{NotStored, RequestFacts};
use crate::cache::revalidate::{conditional_headers, refreshed};
use crate::cache::status::{CacheStatus, Forward};
use crate::cache::vary::{Vary, request_values, variant_key};
use crate::headers::{Forwarding, end_to_end, to_origin};
use crate::origin::{OriginBody, OriginError, OriginResponse};
use crate::routes::AppState;
use crate::storage::{Lock, Lookup, Storage, Write};

/// A GET or HEAD, with what the cache needs to know of it.
#[derive(Debug, Clone)]
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

    /// Whether the request itself asks to skip stored copies.
    fn insists(&self) -> bool {
        self.cache_control.no_cache
            || self.cache_control.max_age.is_some()
            || self.cache_control.min_fresh.is_some()
    }
}

/// Whether Redis took part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Availability {
    Available,
    Unavailable,
}

/// What a stored response may be used for, now, for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Fresh {
        remaining: Duration,
    },
    /// The client's `max-stale` allows it.
    Stale {
        by: Duration,
    },
    /// Serve it and refresh it in the background.
    WhileRevalidate {
        by: Duration,
    },
    /// Ask the origin first.
    Revalidate {
        forward: Forward,
    },
}

fn assess(state: &AppState, entry: &StoredResponse, request: &ReadRequest) -> Use {
    let age = entry.timing.current_age(SystemTime::now());
    let lifetime = entry.lifetime();
    if entry.generation < state.generation.current() {
        // The origin's data changed since this was fetched.
        return Use::Revalidate {
            forward: Forward::Stale,
        };
    }
    let stored = entry.cache_control();
    match reuse(lifetime, age, &stored, &request.cache_control) {
        Reuse::Fresh { remaining } => Use::Fresh { remaining },
        Reuse::Stale { by } => Use::Stale { by },
        Reuse::Revalidate if lifetime > age => Use::Revalidate {
            forward: Forward::Request,
        },
        Reuse::Revalidate => {
            let by = age - lifetime;
            let window =
                stale_while_revalidate_window(&stored, state.policy.stale_while_revalidate);
            if !request.insists() && by <= window {
                Use::WhileRevalidate { by }
            } else {
                Use::Revalidate {
                    forward: Forward::Stale,
                }
            }
        }
    }
}

fn whole_seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

fn hit(
    state: &AppState,
    entry: &StoredResponse,
    request: &ReadRequest,
    ttl: i64,
    outcome: Outcome,
    detail: Option<&'static str>,
) -> Response {
    state.record(outcome);
    let mut status = CacheStatus::hit(ttl);
    status.detail = detail;
    respond::entry(entry, request, Served { status, outcome })
}

pub(super) async fn serve(state: &AppState, request: ReadRequest) -> Response {
    if request.cache_control.no_store {
        // Neither answered from nor stored in the cache.
        let attempt = Attempt::new(
            &request,
            None,
            Forward::Request,
            &request.primary,
            Availability::Available,
        );
        return fetch_alone(state, attempt, false).await;
    }
    // A fresh local copy answers without a Redis round trip.
    let local = state
        .storage
        .local_lookup(&request.primary, &request.headers);
    if let Some(entry) = &local
        && (!request.credentials || entry.shared_with_credentials)
        && let Use::Fresh { remaining } = assess(state, entry, &request)
    {
        return hit(
            state,
            entry,
            &request,
            whole_seconds(remaining),
            Outcome::Hit,
            None,
        );
    }
    let (stored, forward, flight, availability) = match state
        .storage
        .shared_lookup(&request.primary, &request.headers)
        .await
    {
        Lookup::Found(entry) => {
            let flight = flight_of(&request, &entry);
            (Some(entry), Forward::Stale, flight, Availability::Available)
        }
        Lookup::Absent { vary_miss, flight } => {
            let forward = if vary_miss {
                Forward::VaryMiss
            } else {
                Forward::UriMiss
            };
            (None, forward, flight, Availability::Available)
        }
        // Redis is away: the local copy, fresh or not, is all there is.
        Lookup::Unavailable => {
            let flight = local.as_deref().map_or_else(
                || request.primary.clone(),
                |entry| flight_of(&request, entry),
            );
            (local, Forward::Miss, flight, Availability::Unavailable)
        }
    };

    if let Some(entry) = &stored {
        if request.credentials && !entry.shared_with_credentials {
            let attempt = Attempt::new(&request, None, Forward::Bypass, &flight, availability);
            return fetch_alone(state, attempt, true).await;
        }
        match assess(state, entry, &request) {
            Use::Fresh { remaining } => {
                return hit(
                    state,
                    entry,
                    &request,
                    whole_seconds(remaining),
                    Outcome::Hit,
                    None,
                );
            }
            Use::Stale { by } => {
                return hit(
                    state,
                    entry,
                    &request,
                    -whole_seconds(by),
                    Outcome::Stale,
                    None,
                );
            }
            Use::WhileRevalidate { by } => {
                refresh_in_background(state, &request, entry.clone(), flight);
                return hit(
                    state,
                    entry,
                    &request,
                    -whole_seconds(by),
                    Outcome::Stale,
                    Some("stale-while-revalidate"),
                );
            }
            Use::Revalidate { forward } => {
                let attempt = Attempt::new(&request, Some(entry), forward, &flight, availability);
                return fill(state, attempt).await;
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
    let attempt = Attempt::new(&request, None, forward, &flight, availability);
    if request.credentials {
        // Never share a fetch made with someone's credentials.
        return fetch_alone(state, attempt, true).await;
    }
    fill(state, attempt).await
}

/// The key concurrent requests for this entry share.
fn flight_of(request: &ReadRequest, entry: &StoredResponse) -> CacheKey {
    if entry.vary.is_empty() {
        request.primary.clone()
    } else {
        variant_key(&request.primary, &entry.vary)
    }
}

/// One trip towards the origin for a request: the entry it revalidates (if
/// any), why it went forward, the key it shares with identical requests, and
/// whether Redis takes part.
#[derive(Debug, Clone, Copy)]
struct Attempt<'a> {
    request: &'a ReadRequest,
    stored: Option<&'a StoredResponse>,
    forward: Forward,
    flight: &'a CacheKey,
    availability: Availability,
}

impl<'a> Attempt<'a> {
    fn new(
        request: &'a ReadRequest,
        stored: Option<&'a StoredResponse>,
        forward: Forward,
        flight: &'a CacheKey,
        availability: Availability,
    ) -> Self {
        Self {
            request,
            stored,
            forward,
            flight,
            availability,
        }
    }
}

/// What one trip produced.
enum Fetch {
    Entry(Arc<Fetched>),
    /// Not held in memory (too large, endless, or a content coding this cache
    /// cannot read): passed through as it streams.
    Stream(Box<OriginResponse>),
}

/// Fetches (or revalidates) once for all concurrent identical requests.
async fn fill(state: &AppState, attempt: Attempt<'_>) -> Response {
    match state.flights.join(attempt.flight.clone()) {
        Role::Leader(leader) => {
            let result = lead(state, attempt).await;
            leader.complete(match &result {
                Ok(Fetch::Entry(fetched)) => Shared::Fetched(fetched.clone()),
                Ok(Fetch::Stream(_)) => Shared::NotShared,
                Err(error) => Shared::Failed(error.clone()),
            });
            answer(state, attempt, result, false)
        }
        Role::Follower(follower) => match follower.wait(state.coalesce_wait).await {
            Waited::Done(Shared::Fetched(fetched))
                if same_variant(&fetched.entry, &attempt.request.headers) =>
            {
                answer(state, attempt, Ok(Fetch::Entry(fetched)), true)
            }
            Waited::Done(Shared::Failed(error)) => answer(state, attempt, Err(error), true),
            // Waited too long, the leader gave up, or its answer is not for us:
            // go alone, and do not store what another request is storing.
            _ => fetch_alone(state, attempt, false).await,
        },
        Role::Overflow => fetch_alone(state, attempt, false).await,
    }
}

/// Whether a response fetched for another request suits this one too (Vary).
fn same_variant(entry: &StoredResponse, headers: &HeaderMap) -> bool {
    let names: Vec<String> = entry.vary.iter().map(|(name, _)| name.clone()).collect();
    request_values(&names, headers) == entry.vary
}

/// Fetches for this request only (no coalescing, no lock).
async fn fetch_alone(state: &AppState, attempt: Attempt<'_>, store: bool) -> Response {
    let result = fetch(state, attempt, store, None).await;
    answer(state, attempt, result, false)
}

/// The response to a trip's result: the entry (or, if the origin failed and
/// the stored entry may cover it, the stale entry), the stream, or the error.
fn answer(
    state: &AppState,
    attempt: Attempt<'_>,
    result: Result<Fetch, OriginError>,
    collapsed: bool,
) -> Response {
    match result {
        Ok(Fetch::Entry(fetched)) => {
            if fetched.entry.status >= 500
                && let Some(response) = stale_if_error(state, attempt, fetched.entry.status)
            {
                return response;
            }
            served(
                state,
                &fetched,
                attempt.request,
                collapsed || fetched.from_peer,
            )
        }
        Ok(Fetch::Stream(response)) => {
            let outcome = if matches!(attempt.forward, Forward::Bypass | Forward::Request) {
                Outcome::Bypass
            } else {
                Outcome::Miss
            };
            state.record(outcome);
            let mut status = CacheStatus::forward(attempt.forward);
            status.forward_status = Some(response.status.as_u16());
            status.detail = Some(NotStored::TooLarge.detail());
            respond::stream(*response, attempt.request.head, Served { status, outcome })
        }
        Err(error) => origin_failed(state, attempt, error),
    }
}

fn remaining_ttl(entry: &StoredResponse) -> i64 {
    let age = entry.timing.current_age(SystemTime::now());
    whole_seconds(entry.lifetime().saturating_sub(age))
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

/// The stale entry instead of an origin failure, if its stale-if-error window
/// (the origin's directive, else the grace period) still covers it.
fn stale_if_error(state: &AppState, attempt: Attempt<'_>, origin_status: u16) -> Option<Response> {
    let entry = attempt.stored?;
    let window = stale_if_error_window(&entry.cache_control(), state.policy.grace)?;
    let stale_by = entry
        .timing
        .current_age(SystemTime::now())
        .saturating_sub(entry.lifetime());
    if stale_by > window {
        return None;
    }
    state.record(Outcome::Stale);
    let status = CacheStatus {
        forward: Some(attempt.forward),
        forward_status: Some(origin_status),
        ttl: Some(-whole_seconds(stale_by)),
        detail: Some("stale-if-error"),
        ..CacheStatus::default()
    };
    Some(respond::entry(
        entry,
        attempt.request,
        Served {
            status,
            outcome: Outcome::Stale,
        },
    ))
}

fn origin_failed(state: &AppState, attempt: Attempt<'_>, error: OriginError) -> Response {
    let status_code = match error {
        OriginError::Timeout(_) => 504,
        _ => 502,
    };
    if let Some(response) = stale_if_error(state, attempt, status_code) {
        return response;
    }
    state.record(Outcome::Error);
    let mut status = CacheStatus::forward(attempt.forward);
    status.detail = Some(match error {
        OriginError::Timeout(_) => "origin-timeout",
        _ => "origin-unreachable",
    });
    respond::origin_error(error, &status)
}

/// Refreshes a stale entry once, after it was served (stale-while-revalidate).
fn refresh_in_background(
    state: &AppState,
    request: &ReadRequest,
    entry: Arc<StoredResponse>,
    flight: CacheKey,
) {
    let state = state.clone();
    let request = request.clone();
    tokio::spawn(async move {
        // If a fetch for it is under way already, that one refreshes it.
        let Role::Leader(leader) = state.flights.join(flight.clone()) else {
            return;
        };
        let attempt = Attempt::new(
            &request,
            Some(&entry),
            Forward::Stale,
            &flight,
            Availability::Available,
        );
        leader.complete(match lead(&state, attempt).await {
            Ok(Fetch::Entry(fetched)) => Shared::Fetched(fetched),
            Ok(Fetch::Stream(_)) => Shared::NotShared,
            Err(error) => {
                tracing::warn!(key = %request.primary, %error, "background refresh failed");
                Shared::Failed(error)
            }
        });
    });
}

/// A token no other holder of a lock can have.
fn lock_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The fetch of the process' leader: first the cross-replica lock, so that one
/// replica asks the origin while the others wait for what it stores.
async fn lead(state: &AppState, attempt: Attempt<'_>) -> Result<Fetch, OriginError> {
    let (store, lock) =
        if attempt.availability == Availability::Unavailable || attempt.request.credentials {
            (true, None)
        } else {
            let lock = Lock {
                key: Storage::lock_key(attempt.flight),
                token: lock_token(),
            };
            match state
                .storage
                .redis
                .try_lock(&lock.key, &lock.token, state.lock_ttl)
                .await
            {
                Ok(true) => (true, Some(lock)),
                Ok(false) => {
                    if let Some(entry) =
                        wait_for_peer(state, attempt.request, attempt.flight, &lock.key).await
                    {
                        return Ok(Fetch::Entry(Arc::new(Fetched {
                            origin_status: entry.status,
                            stored: Stored::Yes {
                                ttl_seconds: remaining_ttl(&entry),
                            },
                            entry: (*entry).clone(),
                            forward: attempt.forward,
                            from_peer: true,
                        })));
                    }
                    // Nothing came in time: lead if the lock is free now, else fetch
                    // without storing (a crashed holder blocks no longer than its lock).
                    match state
                        .storage
                        .redis
                        .try_lock(&lock.key, &lock.token, state.lock_ttl)
                        .await
                    {
                        Ok(true) => (true, Some(lock)),
                        _ => (false, None),
                    }
                }
                Err(_) => (true, None),
            }
        };
    fetch(state, attempt, store, lock).await
}

/// Waits for another replica to announce the flight filled (at most what its
/// lock has left, and `CACHE_COALESCE_WAIT_MS`), then reads what it stored.
async fn wait_for_peer(
    state: &AppState,
    request: &ReadRequest,
    flight: &CacheKey,
    lock: &CacheKey,
) -> Option<Arc<StoredResponse>> {
    // Subscribed before looking again, so no announcement falls in between.
    let mut fills = state.storage.subscribe_fills();
    let usable = |lookup: Lookup| match lookup {
        Lookup::Found(entry) if matches!(assess(state, &entry, request), Use::Fresh { .. }) => {
            Some(entry)
        }
        _ => None,
    };
    if let Some(entry) = usable(
        state
            .storage
            .shared_lookup(&request.primary, &request.headers)
            .await,
    ) {
        return Some(entry);
    }
    // A holder that crashed blocks no one past its lock's expiry.
    let lock_left = match state.storage.redis.lock_remaining(lock).await {
        Ok(Some(left)) => left,
        Ok(None) => Duration::ZERO,
        Err(_) => state.lock_ttl,
    };
    let wait = lock_left.min(state.coalesce_wait);
    let announced = async {
        loop {
            match fills.recv().await {
                Ok(key) if *key == *flight.as_str() => return,
                Ok(_) => {}
                // Missed some: look anyway.
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    let _ = tokio::time::timeout(wait, announced).await;
    usable(
        state
            .storage
            .shared_lookup(&request.primary, &request.headers)
            .await,
    )
}

/// One request to the origin: a plain GET, or a conditional one when a stored
/// response can be revalidated. Stores the result when `store` and the policy
/// allow, releasing `lock` once it is written.
async fn fetch(
    state: &AppState,
    attempt: Attempt<'_>,
    store: bool,
    lock: Option<Lock>,
) -> Result<Fetch, OriginError> {
    let request = attempt.request;
    let mut headers = to_origin(&request.headers, Some(request.peer), Forwarding::Fill);
    if let Some(stored) = attempt.stored {
        headers.extend(conditional_headers(stored));
    }
    // The data version of the answer: the origin's `Data-Version` if it states
    // one, else the version known before asking (if it changes meanwhile, what
    // comes back counts as older than the change).
    let known_before = state.generation.current();
    let asked = std::time::Instant::now();
    let result = state.origin.get(&request.target, headers).await;
    state.record_origin(result.as_ref().map(|r| r.status), asked.elapsed());
    let response = match result {
        Ok(response) => response,
        Err(error) => {
            if let Some(lock) = &lock {
                state.storage.release(attempt.flight, lock).await;
            }
            return Err(error);
        }
    };
    let generation = data_version(&response.headers).unwrap_or(known_before);
    let entry = match (response.status, attempt.stored, &response.body) {
        (StatusCode::NOT_MODIFIED, Some(stored), _) => {
            let mut entry = refreshed(
                stored,
                &response.headers,
                response.request_time,
                response.response_time,
                &state.policy,
            );
            entry.generation = generation;
            Some((entry, 304))
        }
        (_, _, OriginBody::Complete(body)) => {
            new_entry(state, request, &response, body.clone(), generation)
                .map(|entry| (entry, response.status.as_u16()))
        }
        _ => None,
    };
    let Some((entry, origin_status)) = entry else {
        if let Some(lock) = &lock {
            state.storage.release(attempt.flight, lock).await;
        }
        return Ok(Fetch::Stream(Box::new(response)));
    };
    let (entry, stored) = persist(state, attempt, entry, store, lock).await;
    Ok(Fetch::Entry(Arc::new(Fetched {
        entry,
        origin_status,
        forward: attempt.forward,
        stored,
        from_peer: false,
    })))
}

/// The origin's `Data-Version` header (api-rest states the version an answer was read from).
fn data_version(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("data-version")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The entry for a complete origin response: end-to-end headers, the clocks,
/// the body gzip-compressed when that pays. `None` for a content coding this
/// cache cannot decode (passed through instead).
fn new_entry(
    state: &AppState,
    request: &ReadRequest,
    response: &OriginResponse,
    body: bytes::Bytes,
    generation: u64,
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
        generation,
    })
}

/// The purge tags of an entry: every path prefix of its URL, and the
/// surrogate keys its response carried.
fn tags(state: &AppState, request: &ReadRequest, entry: &StoredResponse) -> Vec<CacheKey> {
    let path = request.target.as_str().split('?').next().unwrap_or("/");
    let mut tags: Vec<CacheKey> = path_prefixes(path)
        .iter()
        .map(|p| state.storage.path_tag(p))
        .collect();
    if let Some(keys) = entry.header("surrogate-key") {
        tags.extend(keys.split_whitespace().map(|k| state.storage.key_tag(k)));
    }
    tags
}

/// Applies the storage policy and stores the entry (locally now, in Redis in
/// the background) when `store` and the policy allow. When a stored response
/// was revalidated and the new answer may not be stored, the old one goes too.
async fn persist(
    state: &AppState,
    attempt: Attempt<'_>,
    mut entry: StoredResponse,
    store: bool,
    lock: Option<Lock>,
) -> (StoredResponse, Stored) {
    let request = attempt.request;
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
            if attempt.stored.is_some()
                && attempt.availability == Availability::Available
                && let Err(error) = state.storage.invalidate(&request.primary).await
            {
                tracing::warn!(key = %request.primary, %error, "could not remove a response that may no longer be stored");
            }
            if let Some(lock) = &lock {
                state.storage.release(attempt.flight, lock).await;
            }
            return (entry, Stored::No(reason));
        }
    };
    entry.lifetime_ms = u64::try_from(terms.lifetime.duration().as_millis()).unwrap_or(u64::MAX);
    entry.shared_with_credentials = terms.shared_with_credentials;
    let ttl_seconds = remaining_ttl(&entry);
    if !store {
        return (entry, Stored::No(NotStored::Concurrent));
    }
    state.storage.store(Write {
        primary: request.primary.clone(),
        entry: Arc::new(entry.clone()),
        vary: terms.vary,
        tags: tags(state, request, &entry),
        ttl: terms.redis_ttl,
        flight: attempt.flight.clone(),
        lock,
    });
    let stored = match attempt.availability {
        Availability::Available => Stored::Yes { ttl_seconds },
        // Kept in this process only.
        Availability::Unavailable => Stored::Unavailable,
    };
    (entry, stored)
}
