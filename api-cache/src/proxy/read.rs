//! GET and HEAD through the cache: look up, decide, act (RFC 9111, RFC 5861).
//!
//! 1. Look up: the in-process tier (a fresh copy there answers at once), then
//!    the shared store.
//! 2. Decide: `cache::plan::decide` turns what was found into a [`Plan`].
//! 3. Act: one action per plan. Trips to the origin are in `fill`; when the
//!    origin fails, a stale entry within its stale-if-error window answers
//!    instead of the error.
//!
//! `docs/read-path.md` draws the states and transitions.

use std::sync::Arc;
use std::time::SystemTime;

use axum::response::Response;
use http::StatusCode;

use super::fill::{self, Fetch, Fetched, SharedStore, Source, Stored, Trip};
use super::request::ReadRequest;
use super::respond;
use crate::cache::entry::Entry;
use crate::cache::key::EntryKey;
use crate::cache::plan::{Holding, Plan, Storing, decide, remaining_ttl, stale_if_error};
use crate::cache::policy::NotStored;
use crate::cache::status::{CacheStatus, Forward, Outcome};
use crate::origin::{OriginBody, OriginError, Unbuffered};
use crate::routes::AppState;
use crate::storage::{Lookup, variant_key_of};

pub(super) async fn serve(state: &AppState, request: ReadRequest) -> Response {
    let now = SystemTime::now();
    let local = state.storage.local(request.url, &request.headers);
    if let Some(entry) = &local
        && let Plan::Serve { ttl } = decide(&request.facts, Holding::Entry(entry), &state.now(now))
    {
        return hit(
            state,
            entry,
            &request,
            CacheStatus::hit(ttl),
            Outcome::Hit,
            now,
        );
    }
    // Boxed: a hit's future stays small, so that moving it costs little.
    Box::pin(beyond_this_process(state, &request, local, now)).await
}

/// The shared store, then the plan. A stale local copy that is to be
/// refilled anyway goes straight to the fill: its leader asks the shared
/// store for all, so that the others do not each fetch (and decode) the
/// same copy again.
async fn beyond_this_process(
    state: &AppState,
    request: &ReadRequest,
    local: Option<Arc<Entry>>,
    now: SystemTime,
) -> Response {
    if let Some(entry) = &local {
        let flight = variant_key_of(request.url, entry.stored());
        let known = state.now_for(now, &flight);
        let plan = decide(&request.facts, Holding::Entry(entry), &known);
        if matches!(plan, Plan::Revalidate { .. } | Plan::WaitForFill { .. }) {
            let found = Found {
                entry: local.clone(),
                missing: Forward::Stale,
                flight,
                shared: SharedStore::NotAsked,
            };
            return act(state, request, &found, plan, now).await;
        }
    }
    let found = look_up(state, request, local).await;
    let known = state.now_for(now, &found.flight);
    let plan = decide(&request.facts, found.holding(), &known);
    act(state, request, &found, plan, now).await
}

/// What the lookup found, and what a trip to the origin would share.
#[derive(Debug)]
struct Found {
    entry: Option<Arc<Entry>>,
    /// Why nothing was found, when nothing was.
    missing: Forward,
    flight: EntryKey,
    shared: SharedStore,
}

impl Found {
    fn holding(&self) -> Holding<'_> {
        match &self.entry {
            Some(entry) => Holding::Entry(entry),
            None => Holding::Nothing(self.missing),
        }
    }
}

/// The shared store's answer; while it is away, the local copy (fresh or
/// not) is all there is.
async fn look_up(state: &AppState, request: &ReadRequest, local: Option<Arc<Entry>>) -> Found {
    let url = request.url;
    match state
        .storage
        .lookup(url, &request.headers, local.as_ref())
        .await
    {
        Lookup::Found(entry) => Found {
            flight: variant_key_of(url, entry.stored()),
            entry: Some(entry),
            missing: Forward::Stale,
            shared: SharedStore::Answered,
        },
        Lookup::Absent { vary_miss, flight } => Found {
            entry: None,
            missing: if vary_miss {
                Forward::VaryMiss
            } else {
                Forward::UriMiss
            },
            flight,
            shared: SharedStore::Answered,
        },
        Lookup::Unavailable => Found {
            flight: local.as_deref().map_or(EntryKey::url(url), |entry| {
                variant_key_of(url, entry.stored())
            }),
            entry: local,
            missing: Forward::Miss,
            shared: SharedStore::Unavailable,
        },
    }
}

/// Carries out the plan: one action per variant.
async fn act(
    state: &AppState,
    request: &ReadRequest,
    found: &Found,
    plan: Plan,
    now: SystemTime,
) -> Response {
    let trip = |forward| Trip {
        request,
        stored: found.entry.as_ref(),
        forward,
        flight: found.flight,
        shared: found.shared,
    };
    match (plan, &found.entry) {
        (Plan::Serve { ttl }, Some(entry)) => hit(
            state,
            entry,
            request,
            CacheStatus::hit(ttl),
            Outcome::Hit,
            now,
        ),
        (Plan::ServeStale { ttl }, Some(entry)) => hit(
            state,
            entry,
            request,
            CacheStatus::hit(ttl),
            Outcome::Stale,
            now,
        ),
        (Plan::ServeStaleAndRefresh { ttl }, Some(entry)) => {
            fill::refresh_in_background(state, request, entry.clone(), found.flight);
            let status = CacheStatus::hit(ttl).detail("stale-while-revalidate");
            hit(state, entry, request, status, Outcome::Stale, now)
        }
        // With no stored entry to fall back on: it may be another client's.
        (
            Plan::Pass {
                forward,
                storing: Storing::Never,
            },
            _,
        ) => {
            let trip = Trip {
                stored: None,
                ..trip(forward)
            };
            answer(state, trip, fill::pass_together(state, trip).await)
        }
        (Plan::Pass { forward, storing }, _) => {
            let trip = Trip {
                stored: None,
                ..trip(forward)
            };
            answer(state, trip, fill::alone(state, trip, storing).await)
        }
        (Plan::OnlyIfCachedMiss { forward }, _) => only_if_cached(state, forward),
        // Revalidate, Fill and WaitForFill join the entry's flight: the first
        // request leads, the others wait for its answer.
        (plan, _) => {
            let trip = trip(plan.forward().unwrap_or(Forward::UriMiss));
            answer(state, trip, fill::fill(state, trip).await)
        }
    }
}

/// `only-if-cached`, and nothing stored may answer: 504 (RFC 9111 5.2.1.7).
fn only_if_cached(state: &AppState, forward: Forward) -> Response {
    state.metrics.outcome(Outcome::Bypass);
    let status = CacheStatus::forward(forward).detail("only-if-cached");
    let detail = "The request asked for a stored response only, and none may answer it.";
    respond::problem(
        StatusCode::GATEWAY_TIMEOUT,
        detail,
        &status,
        Outcome::Bypass,
    )
}

fn hit(
    state: &AppState,
    entry: &Entry,
    request: &ReadRequest,
    status: CacheStatus,
    outcome: Outcome,
    now: SystemTime,
) -> Response {
    state.metrics.outcome(outcome);
    respond::entry(entry, request, &status, outcome, now)
}

/// The response to a trip's result: the entry (or, when the origin failed
/// and the stored entry may cover it, the stale entry), the stream, or the error.
fn answer(state: &AppState, trip: Trip<'_>, result: Result<Fetch, OriginError>) -> Response {
    match result {
        Ok(Fetch::Entry(fetched)) => {
            let status = fetched.entry.stored().status;
            if status >= 500
                && let Some(response) = stale_instead(state, trip, status)
            {
                return response;
            }
            fetched_answer(state, &fetched, trip.request)
        }
        Ok(Fetch::Stream(response)) => {
            let outcome = if matches!(trip.forward, Forward::Bypass | Forward::Request) {
                Outcome::Bypass
            } else {
                Outcome::Miss
            };
            state.metrics.outcome(outcome);
            let why = match &response.body {
                OriginBody::Streaming {
                    why: Unbuffered::BudgetSpent,
                    ..
                } => NotStored::BufferBudget,
                _ => NotStored::TooLarge,
            };
            let status = CacheStatus {
                forward_status: Some(response.status.as_u16()),
                detail: Some(why.detail()),
                ..CacheStatus::forward(trip.forward)
            };
            respond::stream(*response, trip.request.head, &status, outcome)
        }
        Err(error) => origin_failed(state, trip, error),
    }
}

/// Answers from a fetched (or revalidated) entry.
fn fetched_answer(state: &AppState, fetched: &Fetched, request: &ReadRequest) -> Response {
    let now = SystemTime::now();
    if fetched.source == Source::Store {
        let ttl = remaining_ttl(&fetched.entry, now);
        return hit(
            state,
            &fetched.entry,
            request,
            CacheStatus::hit(ttl),
            Outcome::Hit,
            now,
        );
    }
    let collapsed = fetched.source == Source::Collapsed;
    let outcome = match (collapsed, fetched.origin_status, fetched.stored) {
        (true, _, _) => Outcome::Collapsed,
        (_, 304, _) => Outcome::Revalidated,
        (_, _, Stored::Unavailable) => Outcome::Bypass,
        _ => Outcome::Miss,
    };
    state.metrics.outcome(outcome);
    let mut status = CacheStatus {
        forward_status: Some(fetched.origin_status),
        collapsed,
        ..CacheStatus::forward(fetched.forward)
    };
    match fetched.stored {
        Stored::Yes { ttl } => {
            status.stored = true;
            status.ttl = Some(ttl);
        }
        Stored::No(reason) => status.detail = Some(reason.detail()),
        Stored::Unavailable => status.detail = Some("storage-unavailable"),
    }
    respond::entry(&fetched.entry, request, &status, outcome, now)
}

/// The stored entry instead of an origin failure, if it may cover it.
fn stale_instead(state: &AppState, trip: Trip<'_>, origin_status: u16) -> Option<Response> {
    let entry = trip.stored?;
    let now = SystemTime::now();
    let ttl = stale_if_error(entry, now, state.policy.grace)?;
    let status = CacheStatus {
        forward: Some(trip.forward),
        forward_status: Some(origin_status),
        ttl: Some(ttl),
        detail: Some("stale-if-error"),
        ..CacheStatus::default()
    };
    Some(hit(state, entry, trip.request, status, Outcome::Stale, now))
}

fn origin_failed(state: &AppState, trip: Trip<'_>, error: OriginError) -> Response {
    let (code, detail) = match error {
        OriginError::Timeout(_) => (504, "origin-timeout"),
        OriginError::Overloaded => (503, "origin-busy"),
        _ => (502, "origin-unreachable"),
    };
    if let Some(response) = stale_instead(state, trip, code) {
        return response;
    }
    state.metrics.outcome(Outcome::Error);
    let status = CacheStatus {
        detail: Some(detail),
        ..CacheStatus::forward(trip.forward)
    };
    respond::origin_error(error, &status)
}
