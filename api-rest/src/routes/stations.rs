//! `GET /stations` and `GET /stations/{id_entity}`: where the stations are,
//! as JSON or as GeoJSON (`format=geojson` or `Accept: application/geo+json`).

use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use http::HeaderMap;

use super::AppState;
use super::answer::{Format, FormatKind, format_parameter};
use super::by_station::{Opened, StationsRequest, collection, open};
use crate::error::ApiError;
use crate::params::{Params, is_station_id};
use crate::stations::{self, StationFilter, feature};

pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let request = StationsRequest::parse(raw.as_deref(), &headers, &[], |_| ())?;
    let canonical = request.canonical("stations", "");
    let (mut snapshot, answer) =
        match open(&state, &headers, &request.filter.ids, &canonical).await? {
            Opened::NotModified(response) => return Ok(response),
            Opened::Read(snapshot, answer) => (snapshot, answer),
        };
    let listed = stations::list(&mut snapshot, &request.filter).await?;
    Ok(collection(&answer, request.format, &listed, |s| {
        &s.station.id_entity
    }))
}

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
    let format = params.get("format", format_parameter);
    let format = params.finish(format).map_err(ApiError::InvalidParameters)?;
    let format = Format::negotiate(format, &headers);
    let filter = StationFilter {
        ids: vec![id.clone()],
        ..StationFilter::default()
    };
    let canonical = format!("stations/{id}?format={}", format.name());
    let (mut snapshot, answer) = match open(&state, &headers, &filter.ids, &canonical).await? {
        Opened::NotModified(response) => return Ok(response),
        Opened::Read(snapshot, answer) => (snapshot, answer),
    };
    let listed = stations::list(&mut snapshot, &filter).await?;
    let Some(station) = listed.first() else {
        return Err(ApiError::UnknownStations(vec![id]));
    };
    let object = serde_json::to_value(station).unwrap_or_default();
    let body = match format.kind {
        FormatKind::Json => object,
        FormatKind::GeoJson => feature(object),
    };
    Ok(answer.json(format, [id.as_str()], &body))
}
