//! `GET /stations` and `GET /stations/{id_entity}`: where the stations are,
//! in every format (see [`crate::encode`]).

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::HeaderMap;

use super::AppState;
use super::answer::{choose_format, format_parameter};
use super::by_station::{Opened, StationsRequest, open};
use crate::error::ApiError;
use crate::params::{Params, is_station_id};
use crate::stations::{self, StationFilter, StationListing};

/// The stations, with their places and the span of their measurements.
#[utoipa::path(
    get,
    path = "/stations",
    operation_id = "listStations",
    tag = "stations",
    params(super::openapi::StationParams),
    responses(
        (status = 200, description = "The stations, by id (by distance with `near`).",
            content(
                (Vec<StationListing> = "application/json"),
                (super::openapi::FeatureCollection = "application/geo+json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        super::openapi::Failures,
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let request = StationsRequest::parse::<StationListing>(raw.as_deref(), &headers, &[], |_| ())?;
    let canonical = request.canonical("stations", "");
    let (mut snapshot, answer) =
        match open(&state, &headers, &request.filter.ids, &canonical).await? {
            Opened::NotModified(response) => return Ok(response),
            Opened::Read(snapshot, answer) => (snapshot, answer),
        };
    let listed = stations::list(&mut snapshot, &request.filter).await?;
    answer.collection(request.format, &listed, |s| &s.station.id_entity)
}

/// One station.
#[utoipa::path(
    get,
    path = "/stations/{id_entity}",
    operation_id = "getStation",
    tag = "stations",
    params(
        ("id_entity" = String, Path, description = "The station id.", example = "aq_jaen", max_length = 50),
        super::openapi::FormatParam,
    ),
    responses(
        (status = 200, description = "The station.",
            content(
                (StationListing = "application/json"),
                (super::openapi::Feature = "application/geo+json"),
                (String = "text/csv"),
                (String = "application/x-ndjson"),
            )),
        super::openapi::Failures,
    )
)]
pub(super) async fn one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if !is_station_id(&id) {
        return Err(ApiError::UnknownStations(vec![id]));
    }
    let mut params = Params::parse(raw.as_deref(), &["format"]);
    let format = params.get("format", format_parameter::<StationListing>);
    let format = params.finish(format).map_err(ApiError::InvalidParameters)?;
    let format = choose_format::<StationListing>(format, &headers)?;
    let filter = StationFilter {
        ids: vec![id.clone()],
        ..StationFilter::default()
    };
    let canonical = format!("stations/{id}?format={}", format.format.name());
    let (mut snapshot, answer) = match open(&state, &headers, &filter.ids, &canonical).await? {
        Opened::NotModified(response) => return Ok(response),
        Opened::Read(snapshot, answer) => (snapshot, answer),
    };
    let listed = stations::list(&mut snapshot, &filter).await?;
    let Some(station) = listed.first() else {
        return Err(ApiError::UnknownStations(vec![id]));
    };
    answer.single(format, station, &id)
}
