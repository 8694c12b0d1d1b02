//! `GET /changes`: the data version as server-sent events, for caches.
//!
//! ```text
//! event: version
//! data: 42
//! ```
//!
//! Sent at once on connection, then after every committed change; comments
//! keep the connection alive every 10 s. The stream ends when the server stops.
//! At most `CHANGES_MAX_SUBSCRIBERS` streams are open at once (one per
//! api-cache replica is the need); past that, 503.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use service_kit::Problem;

use super::AppState;

pub(super) async fn changes(State(state): State<AppState>) -> Response {
    let Ok(subscriber) = state.changes_subscribers.clone().try_acquire_owned() else {
        let mut response = Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("Too many change-feed subscribers; retry shortly.")
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let mut versions = state.versions.subscribe();
    let stopped = state.lifecycle.stopped();
    let events = async_stream::stream! {
        // Held while the stream is open.
        let _subscriber = subscriber;
        loop {
            let current = *versions.borrow_and_update();
            if let Some(version) = current {
                yield Ok::<_, Infallible>(Event::default().event("version").data(version.to_string()));
            }
            tokio::select! {
                () = stopped.cancelled() => break,
                changed = versions.changed() => if changed.is_err() { break },
            }
        }
    };
    (
        [(header::CACHE_CONTROL, "no-store")],
        Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))),
    )
        .into_response()
}
