//! `GET /air_quality/latest`: per station, the latest reading of each
//! pollutant with its own time, in every format.

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;

use super::AppState;
use super::by_station::{Opened, StationsRequest, open};
use crate::error::ApiError;
use crate::latest::{self, StationLatest};

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
