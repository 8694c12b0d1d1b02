//! `GET /air_quality`: the measurements, streamed in every format (a JSON
//! array by default), a page at a time when `limit` is given (see
//! [`crate::page`]).
//!
//! Every answer carries a strong `ETag` (data version + query digest),
//! `Last-Modified` (when the data last changed) and `Cache-Control: public,
//! max-age=RESPONSE_MAX_AGE_SECONDS`; a matching `If-None-Match` or
//! `If-Modified-Since` gets 304 without reading any row.
//!
//! Rows go from the database cursor to the socket in chunks of about
//! [`crate::encode::CHUNK_BYTES`]; memory does not grow with the number of
//! rows, and the client applies backpressure all the way to PostgreSQL.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use http::{HeaderMap, Method, header};
use service_kit::Metrics;

use super::AppState;
use super::answer::{choose_format, stream};
use super::by_station::{Opened, open};
use crate::error::ApiError;
use crate::measurement::Measurement;
use crate::page;
use crate::query::MeasurementQuery;

pub(super) fn describe_metrics(metrics: &Metrics) {
    metrics.scope(|| {
        metrics::describe_counter!(
            "api_rest_rows_streamed_total",
            "Rows written to clients in streamed answers (measurements, aggregate buckets)."
        );
        metrics::describe_counter!(
            "api_rest_stream_errors_total",
            "Responses cut short by a database error after streaming began."
        );
    });
}

/// Measurements, ordered by time, then station.
///
/// With no parameters: every row, as one JSON array. With `limit`: a page,
/// and a `Link` to the next one while more rows follow.
#[utoipa::path(
    get,
    path = "/air_quality",
    operation_id = "listMeasurements",
    tag = "measurements",
    params(super::openapi::MeasurementParams),
    responses(
        (status = 200, description = "The measurements, streamed.",
            headers(("Link" = String, description = "`<…&cursor=…>; rel=\"next\"` while more rows follow a page.")),
            content(
                (Vec<Measurement> = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        super::openapi::Failures,
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = MeasurementQuery::parse(raw.as_deref(), state.max_limit)
        .map_err(ApiError::InvalidParameters)?;
    let format = choose_format::<Measurement>(query.format, &headers)?;
    let canonical = format!(
        "air_quality?{}&format={}",
        query.canonical(),
        format.format.name()
    );
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
    let mut headers = answer.headers(format, stations.iter().map(String::as_str));
    let last = snapshot.last_of_page(&query).await?;
    if let Some(link) = last.and_then(|key| {
        page::next_link(
            "/air_quality",
            raw.as_deref(),
            &key.cursor(&query.filters()),
        )
    }) {
        headers.insert(header::LINK, link);
    }
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
    let rows = rows.map(|row| row.map_err(ApiError::from));
    let body = stream(state, format.format, rows, query_started);
    Ok((headers, body).into_response())
}
