//! `GET /air_quality`: the measurements as one JSON array, streamed.
//!
//! Every answer carries a strong `ETag` (data version + query digest),
//! `Last-Modified` (when the data last changed) and `Cache-Control: public,
//! max-age=RESPONSE_MAX_AGE_SECONDS`; a matching `If-None-Match` or
//! `If-Modified-Since` gets 304 without reading any row.
//!
//! Rows go from the database cursor to the socket in chunks of about
//! [`CHUNK_BYTES`]; memory does not grow with the number of rows, and the client
//! applies backpressure all the way to PostgreSQL.

use std::pin::pin;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, Method};
use service_kit::Metrics;

use super::AppState;
use super::by_station::{Opened, open};
use crate::error::ApiError;
use crate::measurement::Measurement;
use crate::query::MeasurementQuery;

/// Bytes gathered before a chunk is handed to the socket.
const CHUNK_BYTES: usize = 32 * 1024;

pub(super) fn describe_metrics(metrics: &Metrics) {
    metrics.scope(|| {
        metrics::describe_counter!(
            "api_rest_rows_streamed_total",
            "Measurement rows written to clients."
        );
        metrics::describe_counter!(
            "api_rest_stream_errors_total",
            "Responses cut short by a database error after streaming began."
        );
    });
}

pub(super) async fn list(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = MeasurementQuery::parse(raw.as_deref(), state.max_limit)
        .map_err(ApiError::InvalidParameters)?;
    let canonical = format!("air_quality?{}", query.canonical());
    let (mut snapshot, answer) = match open(&state, &headers, &query.stations, &canonical).await? {
        Opened::NotModified(response) => return Ok(response),
        Opened::Read(snapshot, answer) => (snapshot, answer),
    };
    let stations = if query.stations.is_empty() {
        snapshot.station_ids().await?
    } else {
        let mut named = query.stations.clone();
        named.sort();
        named.dedup();
        named
    };
    let headers = answer.headers(
        "application/json",
        stations.iter().map(String::as_str),
        false,
    );
    if method == Method::HEAD {
        return Ok(headers.into_response());
    }

    let query_started = Instant::now();
    let mut rows = Box::pin(snapshot.measurements(query).peekable());
    // Wait for the first row (or the end) before answering 200: a database that
    // fails now still gets a clean 503 instead of a cut-off body.
    if let Some(Err(_)) = rows.as_mut().peek().await
        && let Some(Err(error)) = rows.next().await
    {
        state.record_database(Err(&error));
        return Err(ApiError::from(error));
    }
    state.record_query("first_row", query_started.elapsed());
    let body = Body::from_stream(json_array(rows, state.clone(), query_started));
    Ok((headers, body).into_response())
}

/// Wraps rows into `[`, rows separated by `,` and newlines, `]`, in chunks.
/// A database error mid-way is logged and ends the body with an error, which
/// aborts the response: the client sees a truncated transfer, never a short
/// array that looks complete.
fn json_array(
    rows: impl Stream<Item = Result<Measurement, sqlx::Error>> + Send + 'static,
    state: AppState,
    started: Instant,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let metrics = state.metrics.clone();
    async_stream::stream! {
        let mut rows = pin!(rows);
        let mut buffer = BytesMut::with_capacity(CHUNK_BYTES + 1024);
        buffer.put_slice(b"[");
        let (mut written, mut unreported) = (0_u64, 0_u64);
        let report = |n: u64| metrics.scope(|| metrics::counter!("api_rest_rows_streamed_total").increment(n));
        while let Some(row) = rows.next().await {
            let row = match row {
                Ok(row) => row,
                Err(error) => {
                    tracing::error!(%error, rows = written, "database error while streaming measurements");
                    state.record_database(Err(&error));
                    report(unreported);
                    metrics.scope(|| metrics::counter!("api_rest_stream_errors_total").increment(1));
                    yield Err(std::io::Error::other("database error while streaming"));
                    return;
                }
            };
            buffer.put_slice(if written == 0 { b"\n" } else { b",\n" });
            if let Err(error) = serde_json::to_writer((&mut buffer).writer(), &row) {
                yield Err(std::io::Error::other(error));
                return;
            }
            written += 1;
            unreported += 1;
            if buffer.len() >= CHUNK_BYTES {
                report(unreported);
                unreported = 0;
                yield Ok(buffer.split().freeze());
            }
        }
        report(unreported);
        state.record_query("stream", started.elapsed());
        buffer.put_slice(b"\n]\n");
        yield Ok(buffer.freeze());
    }
}
