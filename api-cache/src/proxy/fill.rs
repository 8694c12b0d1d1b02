//! Trips to the origin for the read path: fills and revalidations (one per
//! entry across concurrent requests and replicas) and passes (one request alone).
//!
//! A fill joins this process' flight for the entry: the first request leads,
//! the others wait for its answer. The leader takes the entry's fill lock in
//! the shared store; when another replica holds it, the leader waits for that
//! replica's `filled` event and reads what it stored. The lock is an owned
//! guard, released once whatever becomes of the request (`storage::FillLock`).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use tokio::sync::broadcast::error::RecvError;

use super::request::ReadRequest;
use crate::cache::coalesce::{Role, Waited};
use crate::cache::directives::CacheControl;
use crate::cache::encoding::{Encoding, MIN_COMPRESS_BYTES, gunzip, gzip, is_compressible};
use crate::cache::entry::Entry;
use crate::cache::freshness::Timing;
use crate::cache::key::EntryKey;
use crate::cache::plan::{Holding, Plan, Storing, decide, remaining_ttl};
use crate::cache::policy::NotStored;
use crate::cache::revalidate::{conditional_headers, refreshed};
use crate::cache::status::Forward;
use crate::cache::stored::StoredResponse;
use crate::cache::vary::{Vary, request_values, selects};
use crate::headers::{Forwarding, end_to_end, to_origin};
use crate::origin::{OriginBody, OriginError, OriginResponse};
use crate::routes::AppState;
use crate::storage::{Event, FillLock, Lookup, Tag, Write, tags_of, variant_key_of};

/// Bodies larger than this are compressed on a blocking thread.
const COMPRESS_INLINE_BYTES: usize = 64 * 1024;

/// One trip towards the origin for a request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trip<'a> {
    pub(super) request: &'a ReadRequest,
    /// The stored entry: revalidated, and served if the origin fails.
    pub(super) stored: Option<&'a Arc<Entry>>,
    pub(super) forward: Forward,
    /// What concurrent requests for the same response share.
    pub(super) flight: EntryKey,
    pub(super) shared: SharedStore,
}

/// What the shared store said for this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SharedStore {
    Answered,
    /// Down or too slow: whatever is fetched is kept in this process only.
    Unavailable,
    /// Not asked yet (a stale local copy): the leader asks for everyone.
    NotAsked,
}

/// What a trip brought back.
#[derive(Debug)]
pub(super) enum Fetch {
    /// A complete response: new, or the stored one refreshed by a 304.
    Entry(Arc<Fetched>),
    /// Too large to hold: passed through as it streams.
    Stream(Box<OriginResponse>),
}

#[derive(Debug)]
pub(crate) struct Fetched {
    pub(super) entry: Arc<Entry>,
    /// 200 (or another status) for a new body, 304 for a revalidated one.
    pub(super) origin_status: u16,
    pub(super) forward: Forward,
    pub(super) stored: Stored,
    pub(super) source: Source,
}

/// Where a fetched answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// This request's own trip to the origin.
    Origin,
    /// Another request's trip (or another replica's) that this one waited for.
    Collapsed,
    /// The shared store, where the fill's leader found it fresh: no trip.
    Store,
}

/// What became of a fetched response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Yes {
        ttl: i64,
    },
    No(NotStored),
    /// The shared store was unavailable: kept in this process only.
    Unavailable,
}

/// Flights in progress in this process, by entry.
pub(crate) type Flights = crate::cache::coalesce::Coalescer<EntryKey, Shared>;

/// What a leader hands to the requests that waited for it.
#[derive(Debug, Clone)]
pub(crate) enum Shared {
    Fetched(Arc<Fetched>),
    /// The origin failed: waiters answer the same error instead of retrying it.
    Failed(OriginError),
    /// Nothing to share (a body too large to hold): each waiter fetches alone.
    Nothing,
}

/// A fill or revalidation, once for every concurrent request for the entry.
pub(super) async fn fill(state: &AppState, trip: Trip<'_>) -> Result<Fetch, OriginError> {
    together(&state.flights, state, trip, lead(state, trip)).await
}

/// A pass that may not be stored (the request said `no-store`), once for
/// every concurrent such request for the entry: a flood of them reaches the
/// origin once at a time, not once each.
pub(super) async fn pass_together(state: &AppState, trip: Trip<'_>) -> Result<Fetch, OriginError> {
    let alone = fetch(state, trip, Storing::Never, None);
    together(&state.pass_flights, state, trip, alone).await
}

/// The first request for the flight runs `leading` and hands its result to
/// the others, which wait for it.
async fn together(
    flights: &Arc<Flights>,
    state: &AppState,
    trip: Trip<'_>,
    leading: impl Future<Output = Result<Fetch, OriginError>>,
) -> Result<Fetch, OriginError> {
    match flights.join(trip.flight) {
        Role::Leader(leader) => {
            let result = leading.await;
            leader.complete(match &result {
                Ok(Fetch::Entry(fetched)) => Shared::Fetched(fetched.clone()),
                Ok(Fetch::Stream(_)) => Shared::Nothing,
                Err(error) => Shared::Failed(error.clone()),
            });
            result
        }
        Role::Follower(follower) => match follower.wait(state.coalesce_wait).await {
            Waited::Done(Shared::Fetched(fetched))
                if selects(&fetched.entry.stored().vary, &trip.request.headers) =>
            {
                Ok(Fetch::Entry(Arc::new(waited_for(&fetched))))
            }
            Waited::Done(Shared::Failed(error)) => Err(error),
            // Waited too long, the leader gave up, or its answer is not for
            // this request: go alone, and do not store what another is storing.
            _ => alone(state, trip, Storing::Never).await,
        },
        Role::Overflow => alone(state, trip, Storing::Never).await,
    }
}

/// The leader's answer, as a request that waited for it sees it.
fn waited_for(fetched: &Fetched) -> Fetched {
    let source = match fetched.source {
        Source::Store => Source::Store,
        Source::Origin | Source::Collapsed => Source::Collapsed,
    };
    Fetched {
        source,
        entry: fetched.entry.clone(),
        ..*fetched
    }
}

/// A trip for this request only: no coalescing, no lock.
pub(super) async fn alone(
    state: &AppState,
    trip: Trip<'_>,
    storing: Storing,
) -> Result<Fetch, OriginError> {
    fetch(state, trip, storing, None).await
}

/// Refreshes a stale entry once, after it was served (stale-while-revalidate).
pub(super) fn refresh_in_background(
    state: &AppState,
    request: &ReadRequest,
    entry: Arc<Entry>,
    flight: EntryKey,
) {
    let (state, request) = (state.clone(), request.clone());
    tokio::spawn(async move {
        // If a fill of it is under way already, that one refreshes it.
        let Role::Leader(leader) = state.flights.join(flight) else {
            return;
        };
        let trip = Trip {
            request: &request,
            stored: Some(&entry),
            forward: Forward::Stale,
            flight,
            shared: SharedStore::Answered,
        };
        leader.complete(match lead(&state, trip).await {
            Ok(Fetch::Entry(fetched)) => Shared::Fetched(fetched),
            Ok(Fetch::Stream(_)) => Shared::Nothing,
            Err(error) => {
                tracing::warn!(key = %flight, %error, "background refresh failed");
                Shared::Failed(error)
            }
        });
    });
}

/// The leader's trip: what a fill that just ended left here, else the fill
/// lock across replicas, so that one replica asks the origin while the others
/// wait for what it stores.
async fn lead(state: &AppState, mut trip: Trip<'_>) -> Result<Fetch, OriginError> {
    if let Some(entry) = filled_meanwhile(state, trip.request) {
        return Ok(already_stored(entry, trip.forward, Source::Collapsed));
    }
    if trip.shared == SharedStore::NotAsked {
        // Another replica may have refreshed it already.
        match state
            .storage
            .lookup(trip.request.url, &trip.request.headers, trip.stored)
            .await
        {
            Lookup::Found(entry) if servable(state, trip.request, &entry) => {
                return Ok(already_stored(entry, trip.forward, Source::Store));
            }
            Lookup::Unavailable => trip.shared = SharedStore::Unavailable,
            _ => trip.shared = SharedStore::Answered,
        }
    }
    if trip.shared == SharedStore::Unavailable {
        return fetch(state, trip, Storing::IfAllowed, None).await;
    }
    match state.storage.lock(trip.flight, state.lock_ttl).await {
        Ok(Some(lock)) => fetch(state, trip, Storing::IfAllowed, Some(lock)).await,
        Ok(None) => {
            if let Some(entry) = wait_for_peer(state, trip).await {
                return Ok(already_stored(entry, trip.forward, Source::Collapsed));
            }
            // Nothing came in time: lead if the lock is free now, else fetch
            // without storing (a crashed holder blocks no longer than its lock).
            match state.storage.lock(trip.flight, state.lock_ttl).await {
                Ok(Some(lock)) => fetch(state, trip, Storing::IfAllowed, Some(lock)).await,
                _ => fetch(state, trip, Storing::Never, None).await,
            }
        }
        Err(_) => fetch(state, trip, Storing::IfAllowed, None).await,
    }
}

/// An entry this request may be served from, if the in-process tier holds one
/// now (a fill that ended between this request's lookup and its turn).
fn filled_meanwhile(state: &AppState, request: &ReadRequest) -> Option<Arc<Entry>> {
    let entry = state.storage.local(request.url, &request.headers)?;
    servable(state, request, &entry).then_some(entry)
}

/// Whether the entry may answer the request as it is, now.
fn servable(state: &AppState, request: &ReadRequest, entry: &Entry) -> bool {
    let now = state.now(SystemTime::now());
    matches!(
        decide(&request.facts, Holding::Entry(entry), &now),
        Plan::Serve { .. }
    )
}

/// An entry that is stored already: filled by another request or replica
/// while this one waited, or found fresh in the shared store.
fn already_stored(entry: Arc<Entry>, forward: Forward, source: Source) -> Fetch {
    Fetch::Entry(Arc::new(Fetched {
        origin_status: entry.stored().status,
        stored: Stored::Yes {
            ttl: remaining_ttl(&entry, SystemTime::now()),
        },
        entry,
        forward,
        source,
    }))
}

/// Waits for the replica holding the lock to announce its fill (at most what
/// its lock has left, and `CACHE_COALESCE_WAIT_MS`), then reads what it stored.
async fn wait_for_peer(state: &AppState, trip: Trip<'_>) -> Option<Arc<Entry>> {
    // Subscribed before looking again, so no announcement falls in between.
    let mut events = state.storage.events();
    if let Some(entry) = peer_entry(state, trip.request).await {
        return Some(entry);
    }
    // A holder that crashed blocks no one past its lock's expiry.
    let lock_left = match state.storage.lock_remaining(trip.flight).await {
        Ok(left) => left.unwrap_or_default(),
        Err(_) => state.lock_ttl,
    };
    let announced = async {
        loop {
            match events.recv().await {
                Ok(Event::Filled(key)) if key == trip.flight => return,
                Ok(_) => {}
                // Missed some: look anyway.
                Err(RecvError::Lagged(_)) => return,
                Err(RecvError::Closed) => std::future::pending::<()>().await,
            }
        }
    };
    let _ = tokio::time::timeout(lock_left.min(state.coalesce_wait), announced).await;
    peer_entry(state, trip.request).await
}

/// What the shared store holds for the request, if it may be served.
async fn peer_entry(state: &AppState, request: &ReadRequest) -> Option<Arc<Entry>> {
    let Lookup::Found(entry) = state
        .storage
        .lookup(request.url, &request.headers, None)
        .await
    else {
        return None;
    };
    servable(state, request, &entry).then_some(entry)
}

/// One request to the origin: a plain GET, or a conditional one when a stored
/// response can be revalidated. Stores the answer when `store` and the policy
/// allow. `lock` is released when the answer is stored, or when it is dropped.
async fn fetch(
    state: &AppState,
    trip: Trip<'_>,
    storing: Storing,
    lock: Option<FillLock>,
) -> Result<Fetch, OriginError> {
    let request = trip.request;
    let mut headers = to_origin(&request.headers, Some(request.peer), Forwarding::Fill);
    if let Some(stored) = trip.stored {
        headers.extend(conditional_headers(stored.stored()));
    }
    // The data version of the answer: the origin's `Data-Version` if it states
    // one, else the version known before asking (if it changes meanwhile, what
    // comes back counts as older than the change).
    let known_before = state.generation.current();
    let asked = Instant::now();
    let result = state.origin.get(&request.target, headers).await;
    state
        .metrics
        .origin(&origin_status_label(&result), asked.elapsed());
    let response = result?;
    let generation = data_version(&response.headers).unwrap_or(known_before);
    let received = match (response.status, trip.stored, &response.body) {
        (StatusCode::NOT_MODIFIED, Some(stored), _) => {
            Some(revalidated(state, stored, &response, generation))
        }
        (_, _, OriginBody::Complete(body, _budget)) => {
            new_entry(state, request, &response, body.clone(), generation).await
        }
        _ => None,
    };
    let Some(received) = received else {
        return Ok(Fetch::Stream(Box::new(response)));
    };
    let (entry, stored) = persist(
        state,
        trip,
        received.stored,
        received.identity,
        storing,
        lock,
    )
    .await;
    Ok(Fetch::Entry(Arc::new(Fetched {
        entry,
        origin_status: response.status.as_u16(),
        forward: trip.forward,
        stored,
        source: Source::Origin,
    })))
}

/// An origin's answer as the cache keeps it, and its decoded body.
#[derive(Debug)]
struct Received {
    stored: StoredResponse,
    identity: Bytes,
}

fn origin_status_label(result: &Result<OriginResponse, OriginError>) -> String {
    match result {
        Ok(response) => response.status.as_str().to_owned(),
        Err(OriginError::Timeout(_)) => "timeout".to_owned(),
        Err(_) => "error".to_owned(),
    }
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

/// The stored entry refreshed by the origin's 304: its body unchanged, and
/// already decoded.
fn revalidated(
    state: &AppState,
    stored: &Entry,
    response: &OriginResponse,
    generation: u64,
) -> Received {
    let mut refreshed = refreshed(
        stored.stored(),
        &response.headers,
        response.request_time,
        response.response_time,
        &state.policy,
    );
    refreshed.generation = generation;
    Received {
        stored: refreshed,
        identity: stored.representation(false).body.clone(),
    }
}

/// The stored form of a complete origin response (end-to-end headers, the
/// clocks, the body gzip-compressed when that pays) and its decoded body.
/// `None` for a content coding this cache cannot decode (passed through instead).
async fn new_entry(
    state: &AppState,
    request: &ReadRequest,
    response: &OriginResponse,
    body: Bytes,
    generation: u64,
) -> Option<Received> {
    let origin_encoding = Encoding::from_response(&response.headers)?;
    let identity = match origin_encoding {
        Encoding::Identity => body.clone(),
        Encoding::Gzip => {
            let (packed, limit) = (body.clone(), state.policy.max_body_bytes);
            crate::cpu::run(move || gunzip(&packed, limit))
                .await?
                .ok()?
        }
    };
    let headers: Vec<(String, String)> = end_to_end(&response.headers)
        .into_iter()
        .filter(|(name, _)| !matches!(name.as_str(), "content-encoding" | "age"))
        .collect();
    let content_type = response
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let compress = state.policy.compress
        && origin_encoding == Encoding::Identity
        && body.len() >= MIN_COMPRESS_BYTES
        && is_compressible(content_type)
        && !CacheControl::from_headers(&response.headers).no_transform;
    let (body, encoding) = if compress {
        (compressed(body).await?, Encoding::Gzip)
    } else {
        (body, origin_encoding)
    };
    let stored = StoredResponse {
        status: response.status.as_u16(),
        headers,
        body,
        encoding,
        identity_length: identity.len() as u64,
        timing: Timing::from_response(
            response.request_time,
            response.response_time,
            &response.headers,
        ),
        lifetime_ms: 0,
        vary: request_values(
            Vary::from_headers(&response.headers).names(),
            &request.headers,
        ),
        shared_with_credentials: false,
        generation,
    };
    Some(Received { stored, identity })
}

/// gzip, off the async workers for large bodies.
async fn compressed(body: Bytes) -> Option<Bytes> {
    if body.len() <= COMPRESS_INLINE_BYTES {
        return Some(gzip(&body));
    }
    crate::cpu::run(move || gzip(&body)).await
}

/// Applies the storage policy and stores the entry (locally now, in the shared
/// store in the background) when `store` and the policy allow. When a stored
/// response was revalidated and the new answer may not be stored, the old one
/// goes too.
async fn persist(
    state: &AppState,
    trip: Trip<'_>,
    mut stored: StoredResponse,
    identity: Bytes,
    storing: Storing,
    lock: Option<FillLock>,
) -> (Arc<Entry>, Stored) {
    let request = trip.request;
    let identity_length = usize::try_from(stored.identity_length).unwrap_or(usize::MAX);
    let terms = match state.policy.storable(
        &request.facts,
        stored.status,
        &stored.header_map(),
        identity_length,
        &stored.timing,
    ) {
        Ok(terms) => terms,
        Err(reason) => {
            tracing::debug!(key = %trip.flight, ?reason, "response not stored");
            if trip.stored.is_some()
                && trip.shared == SharedStore::Answered
                && let Err(error) = state.storage.invalidate(request.url).await
            {
                tracing::warn!(key = %trip.flight, %error, "could not remove a response that may no longer be stored");
            }
            return (
                Arc::new(Entry::with_identity(stored, identity)),
                Stored::No(reason),
            );
        }
    };
    stored.lifetime_ms = u64::try_from(terms.lifetime.duration().as_millis()).unwrap_or(u64::MAX);
    stored.shared_with_credentials = terms.shared_with_credentials;
    let key = variant_key_of(request.url, &stored);
    let outdated = stored.generation < state.generation.current();
    let entry = Arc::new(Entry::with_identity(stored, identity));
    if outdated {
        return (entry, Stored::No(NotStored::Outdated));
    }
    if storing == Storing::Never {
        return (entry, Stored::No(NotStored::Concurrent));
    }
    let write = Write {
        key,
        entry: entry.clone(),
        vary: terms.vary,
        tags: tags(request, &entry),
        ttl: terms.redis_ttl,
    };
    state.storage.store(write, lock);
    let stored = if trip.shared == SharedStore::Answered {
        Stored::Yes {
            ttl: remaining_ttl(&entry, SystemTime::now()),
        }
    } else {
        Stored::Unavailable
    };
    (entry, stored)
}

/// The purge tags of an entry (see `storage::tags_of`).
fn tags(request: &ReadRequest, entry: &Entry) -> Vec<Tag> {
    tags_of(
        request.target.path(),
        entry.stored().header("surrogate-key"),
    )
}
