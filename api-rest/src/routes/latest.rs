//! `GET /air_quality/latest`: per station, the latest reading of each
//! pollutant with its own time, in every format.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;

use super::AppState;
use super::by_station::{Opened, StationsRequest, open};
use crate::error::ApiError;
use crate::latest::{self, StationLatest};

/// Per station, the latest reading of each pollutant, each with its time.
#[utoipa::path(
    get,
    path = "/air_quality/latest",
    operation_id = "latestReadings",
    tag = "measurements",
    params(super::openapi::StationParams),
    responses(
        (status = 200, description = "One entry per station.",
            content(
                (Vec<StationLatest> = "application/json"),
                (super::openapi::FeatureCollection = "application/geo+json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        super::openapi::Failures,
    )
)]
pub(super) async fn latest(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let request = StationsRequest::parse::<StationLatest>(raw.as_deref(), &headers, &[], |_| ())?;
    let canonical = request.canonical("latest", "");
    let (mut snapshot, answer) =
        match open(&state, &headers, &request.filter.ids, &canonical).await? {
            Opened::NotModified(response) => return Ok(response),
            Opened::Read(snapshot, answer) => (snapshot, answer),
        };
    let stations = latest::read(&mut snapshot, &request.filter).await?;
    answer.collection(request.format, &stations, |s| &s.station.id_entity)
}
