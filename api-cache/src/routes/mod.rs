//! The HTTP surface of api-cache. The public port ([`Front`]): `/healthz`,
//! and every other path handed straight to the proxy. The admin port
//! ([`admin`]): metrics, readiness, liveness and the purge API, never on the
//! public port. [`AppState`] is what handlers share.

mod health;
mod purge;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{FromRef, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Router, middleware};
use http::header;
use secrecy::SecretString;
use service_kit::server::Respond;
use service_kit::telemetry::RequestTelemetry;
use service_kit::{Lifecycle, Metrics, problem, telemetry};

use crate::cache::key::EntryKey;
use crate::cache::plan::Now;
use crate::cache::policy::Policy;
use crate::changes::Generation;
use crate::metrics::CacheMetrics;
use crate::origin::Origin;
use crate::proxy::{self, Flights};
use crate::storage::Storage;

/// What handlers share: one pointer to clone per request.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Context>);

#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) storage: Storage,
    pub(crate) origin: Origin,
    /// Fills in progress in this process, by entry.
    pub(crate) flights: Arc<Flights>,
    /// Passes of `no-store` requests in progress, by entry.
    pub(crate) pass_flights: Arc<Flights>,
    pub(crate) policy: Policy,
    pub(crate) coalesce_wait: Duration,
    /// How long a replica's fill lock lasts.
    pub(crate) lock_ttl: Duration,
    /// The origin's data version, from its change feed.
    pub(crate) generation: Generation,
    /// `CACHE_PURGE_TOKEN`; `None` disables the purge endpoint.
    pub(crate) purge_token: Option<SecretString>,
    pub(crate) metrics: CacheMetrics,
    pub(crate) registry: Metrics,
    pub(crate) lifecycle: Lifecycle,
    pub(crate) request_limits: telemetry::RequestLimits,
}

impl AppState {
    pub(crate) fn new(context: Context) -> Self {
        Self(Arc::new(context))
    }

    /// What the read path's decisions need to know now.
    pub(crate) fn now(&self, time: SystemTime) -> Now {
        Now {
            time,
            generation: self.generation.current(),
            fill_in_progress: false,
            stale_while_revalidate: self.policy.stale_while_revalidate,
        }
    }

    /// The same, for a request that may join the fill of `flight`.
    pub(crate) fn now_for(&self, time: SystemTime, flight: &EntryKey) -> Now {
        Now {
            fill_in_progress: self.flights.in_progress(flight),
            ..self.now(time)
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Context;

    fn deref(&self) -> &Context {
        &self.0
    }
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.registry.clone()
    }
}

/// The service's own endpoints on the public port (for probes).
const OWN_PATHS: &[&str] = &["/healthz"];

/// The route label of every proxied request, in metrics and access lines.
const PROXY_ROUTE: &str = "/{*path}";

/// The handler of one connection: the service's own endpoints through the
/// router, every other path straight to the proxy, without routing work on
/// the hit path. Each request gets its id, metrics and access line either way.
#[derive(Debug, Clone)]
pub(crate) struct Front {
    router: Router,
    state: AppState,
    telemetry: RequestTelemetry,
}

impl Front {
    pub(crate) fn new(state: AppState) -> Self {
        let telemetry = RequestTelemetry::new(&state.registry, state.request_limits);
        let router = finish(
            Router::new().route("/healthz", get(health::live)),
            &telemetry,
            state.clone(),
        );
        Self {
            router,
            state,
            telemetry,
        }
    }

    /// The handler of a connection from `peer`.
    pub(crate) fn for_peer(&self, peer: IpAddr) -> Connection {
        Connection {
            front: self.clone(),
            peer,
        }
    }
}

/// [`Front`] for one connection.
#[derive(Debug)]
pub(crate) struct Connection {
    front: Front,
    peer: IpAddr,
}

impl Respond for Connection {
    fn respond(&self, request: Request) -> impl Future<Output = Response> + Send + use<> {
        let own = OWN_PATHS.contains(&request.uri().path());
        let (front, peer) = (self.front.clone(), self.peer);
        async move {
            if own {
                return front.router.respond(request).await;
            }
            let Front {
                state, telemetry, ..
            } = front;
            telemetry
                .track(PROXY_ROUTE, request, |request| {
                    problem::catching(proxy::proxy(state, peer, request))
                })
                .await
        }
    }
}

/// The operators' endpoints (`API_CACHE_ADMIN_PORT`).
pub(crate) fn admin(state: AppState) -> Router {
    let telemetry = RequestTelemetry::new(&state.registry, state.request_limits);
    let routes = Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(render_metrics))
        .route(purge::PATH, post(purge::purge));
    finish(routes, &telemetry, state)
}

/// The layers every request of a router goes through.
fn finish(routes: Router<AppState>, telemetry: &RequestTelemetry, state: AppState) -> Router {
    routes
        // Innermost: a panic becomes a 500 that the metrics and the access log see.
        .layer(problem::catch_panics())
        // Outermost: the request id exists before anything logs; every
        // request is held to the limits, counted, timed and logged.
        .layer(middleware::from_fn_with_state(
            telemetry.clone(),
            telemetry::track_requests,
        ))
        .with_state(state)
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .set_state(state.storage.local_weight(), state.generation.current());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.registry.render(),
    )
}
