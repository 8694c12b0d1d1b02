//! `GET /air_quality/aggregates`: per station and bucket, coverage and
//! per-pollutant mean, min, max and p95, streamed in every format (see
//! [`crate::aggregate`]).

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method};

use super::AppState;
use super::answer::{choose_format, stream};
use super::by_station::{Opened, invalid, open};
use crate::aggregate::{self, AggregateQuery, MAX_BUCKETS, PlanError, Summary};
use crate::error::ApiError;

/// Per station and bucket: readings against the hours the bucket can hold,
/// and per pollutant mean, min, max and 95th percentile.
#[utoipa::path(
    get,
    path = "/air_quality/aggregates",
    operation_id = "aggregates",
    tag = "measurements",
    params(super::openapi::AggregateParams),
    responses(
        (status = 200, description = "One entry per bucket, station after station; streamed.",
            content(
                (Vec<Summary> = "application/json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        super::openapi::Failures,
    )
)]
pub(super) async fn aggregates(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let query = AggregateQuery::parse(raw.as_deref()).map_err(ApiError::InvalidParameters)?;
    let format = choose_format::<Summary>(query.format, &headers)?;
    let canonical = format!(
        "aggregates?{}&format={}",
        query.canonical(),
        format.format.name()
    );
    let (mut snapshot, answer) = match open(&state, &headers, &query.stations, &canonical).await? {
        Opened::NotModified(response) => return Ok(response),
        Opened::Read(snapshot, answer) => (snapshot, answer),
    };
    let ranges = aggregate::plan(&mut snapshot, &query)
        .await
        .map_err(|error| plan_error(error, &query))?;
    let ids = ranges.iter().map(|r| r.id_entity.as_str());
    let headers = answer.headers(format, ids);
    if method == Method::HEAD {
        return Ok(headers.into_response());
    }
    let buckets = aggregate::stream(snapshot, query.interval, ranges);
    let body = stream(state, format.format, buckets, Instant::now());
    Ok((headers, body).into_response())
}

fn plan_error(error: PlanError, query: &AggregateQuery) -> ApiError {
    match error {
        PlanError::Database(error) => ApiError::from(error),
        PlanError::TooManyBuckets(count) => invalid(
            "interval",
            query.interval.as_str(),
            format!(
                "this would make about {count} buckets; at most {MAX_BUCKETS}: narrow from and to, \
                 name fewer stations or choose a longer interval"
            ),
        ),
        PlanError::UnknownZone { .. } => ApiError::Internal(error.to_string()),
    }
}
