//! `GET /air_quality/aqi?standard=eaqi|us-epa`: per station, the current
//! Air Quality Index with its category, each pollutant's sub-index and the
//! dominant pollutant, in every format (see [`crate::aqi`]).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use http::HeaderMap;

use super::AppState;
use super::by_station::{Opened, StationsRequest, open};
use crate::aqi::{self, Standard, StationIndex};
use crate::error::ApiError;
use crate::params::Params;

/// Per station, the current Air Quality Index, its category, each
/// pollutant's sub-index and the dominant pollutant.
#[utoipa::path(
    get,
    path = "/air_quality/aqi",
    operation_id = "airQualityIndex",
    tag = "measurements",
    params(super::openapi::StationParams, super::openapi::AqiParams),
    responses(
        (status = 200, description = "One entry per station.",
            content(
                (Vec<StationIndex> = "application/json"),
                (super::openapi::FeatureCollection = "application/geo+json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        super::openapi::Failures,
    )
)]
pub(super) async fn aqi(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let read_standard = |params: &mut Params| {
        params
            .get("standard", Standard::parse)
            .unwrap_or(Standard::Eaqi)
    };
    let request = StationsRequest::parse::<StationIndex>(
        raw.as_deref(),
        &headers,
        &["standard"],
        read_standard,
    )?;
    let standard = request.extra;
    let canonical = request.canonical("aqi", &format!("standard={}", standard.as_str()));
    let (mut snapshot, answer) =
        match open(&state, &headers, &request.filter.ids, &canonical).await? {
            Opened::NotModified(response) => return Ok(response),
            Opened::Read(snapshot, answer) => (snapshot, answer),
        };
    let indices = aqi::read(&mut snapshot, &request.filter, standard).await?;
    answer.collection(request.format, &indices, |i| &i.station.id_entity)
}
