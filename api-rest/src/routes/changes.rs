//! `GET /changes`: the data version as server-sent events, for caches.
//!
//! ```text
//! event: version
//! data: 42
//! ```
//!
//! Sent at once on connection, then after every committed change; comments
//! keep the connection alive every 10 s. The stream ends when the server stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use http::header;

use super::AppState;

pub(super) async fn changes(State(state): State<AppState>) -> impl IntoResponse {
    let mut versions = state.versions.subscribe();
    let stopped = state.lifecycle.stopped();
    let events = async_stream::stream! {
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
}
