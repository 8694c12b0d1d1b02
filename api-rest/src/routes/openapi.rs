//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers
//! (`#[utoipa::path]`) and the types they answer with (`ToSchema`), plus the
//! parameters each endpoint's strict parser accepts.

use axum::extract::State;
use axum::response::IntoResponse;
use http::header;
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, IntoResponses, OpenApi, ToSchema};

use super::AppState;
use crate::params::InvalidParam;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "air-quality-api",
        description = "Air-quality measurements, stations, latest readings, aggregates and the Air Quality Index.\n\n\
            Every endpoint answers JSON (default), CSV (`text/csv` or `format=csv`), NDJSON \
            (`application/x-ndjson`) and, where records have coordinates, GeoJSON \
            (`application/geo+json`). Concentrations are µg/m³, CO mg/m³; times are UTC \
            (RFC 3339). Answers carry ETag and Last-Modified; conditional requests get 304.",
        license(name = "MIT")
    ),
    paths(
        super::air_quality::list,
        super::latest::latest,
        super::aggregates::aggregates,
        super::aqi::aqi,
        super::stations::list,
        super::stations::one,
    ),
    // What the manual schemas (values per pollutant, sub-indices) refer to.
    components(schemas(
        Problem,
        InvalidParam,
        FeatureCollection,
        Feature,
        Point,
        crate::latest::Reading,
        crate::aggregate::tally::Stats,
        crate::aqi::SubIndex,
    )),
    tags(
        (name = "measurements", description = "Hourly measurements and what is computed from them."),
        (name = "stations", description = "Where the measurements are taken."),
    )
)]
struct ApiDoc;

/// The document as served: `limit`'s maximum is this deployment's
/// `QUERY_MAX_LIMIT`.
pub(super) fn document(max_limit: u64) -> Vec<u8> {
    let mut document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let parameters = &mut document["paths"]["/air_quality"]["get"]["parameters"];
    if let Some(parameters) = parameters.as_array_mut() {
        for parameter in parameters {
            if parameter["name"] == "limit" {
                parameter["schema"]["maximum"] = Value::from(max_limit);
            }
        }
    }
    serde_json::to_vec_pretty(&document).unwrap_or_default()
}

pub(super) async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        state.openapi.clone(),
    )
}

/// An `application/problem+json` body (RFC 9457).
#[derive(Serialize, ToSchema)]
pub(super) struct Problem {
    /// A URI reference naming the kind of problem.
    #[serde(rename = "type")]
    kind: String,
    title: String,
    status: u16,
    detail: Option<String>,
    instance: Option<String>,
    /// 400: each rejected parameter, its value and why.
    invalid_params: Option<Vec<InvalidParam>>,
    /// 404: the station ids that do not exist.
    unknown_stations: Option<Vec<String>>,
    /// 406: the media types the endpoint answers in.
    available: Option<Vec<String>>,
}

/// What every endpoint may answer besides its data.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub(super) enum Failures {
    /// The client's copy (`If-None-Match`, `If-Modified-Since`) is current.
    #[response(status = 304)]
    NotModified,
    /// A parameter is unknown, repeated or invalid: `invalid_params` names each.
    #[response(status = 400, content_type = "application/problem+json")]
    Invalid(Problem),
    /// A station named does not exist: `unknown_stations` lists them.
    #[response(status = 404, content_type = "application/problem+json")]
    Unknown(Problem),
    /// `Accept` allows none of the endpoint's formats: `available` lists them.
    #[response(status = 406, content_type = "application/problem+json")]
    NotAcceptable(Problem),
    /// The URL is longer than the cache accepts (api-cache).
    #[response(status = 414, content_type = "application/problem+json")]
    TooLong(Problem),
    /// The database cannot be reached; retry after `Retry-After` seconds.
    #[response(status = 503, content_type = "application/problem+json")]
    Unavailable(Problem),
}

/// A GeoJSON FeatureCollection (RFC 7946).
#[derive(Serialize, ToSchema)]
pub(super) struct FeatureCollection {
    #[serde(rename = "type")]
    #[schema(example = "FeatureCollection")]
    kind: String,
    features: Vec<Feature>,
}

/// A GeoJSON Feature: the station's point, the record's other fields as
/// properties.
#[derive(Serialize, ToSchema)]
pub(super) struct Feature {
    #[serde(rename = "type")]
    #[schema(example = "Feature")]
    kind: String,
    /// The station id.
    id: Option<String>,
    geometry: Option<Point>,
    #[schema(value_type = Object)]
    properties: Value,
}

/// A GeoJSON Point: `[longitude, latitude]`.
#[derive(Serialize, ToSchema)]
pub(super) struct Point {
    #[serde(rename = "type")]
    #[schema(example = "Point")]
    kind: String,
    #[schema(min_items = 2, max_items = 3)]
    coordinates: Vec<f64>,
}

/// The parameters of `/air_quality`. Unknown or repeated parameters are a 400.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct MeasurementParams {
    /// A station id, or up to 100 comma-separated.
    #[param(
        pattern = r"^[A-Za-z0-9_.:\-]{1,50}(,[A-Za-z0-9_.:\-]{1,50}){0,99}$",
        example = "aq_jaen"
    )]
    id_entity: Option<String>,
    /// Start, inclusive: an ISO 8601 date or date-time (UTC unless an offset is given).
    #[param(max_length = 40, example = "2016-10-01")]
    from: Option<String>,
    /// End, exclusive.
    #[param(max_length = 40, example = "2016-10-02T12:00:00Z")]
    to: Option<String>,
    /// By `time_instant`, then `id_entity`.
    #[param(inline)]
    order: Option<Order>,
    /// Rows per page; with more rows, `Link: <…>; rel="next"` points to the next page.
    #[param(minimum = 1)]
    limit: Option<u64>,
    /// From a previous page's `Link`; only valid with the same filters.
    #[param(max_length = 512)]
    cursor: Option<String>,
    #[param(inline)]
    format: Option<TableFormat>,
}

/// The parameters that pick stations.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct StationParams {
    /// A station id, or up to 100 comma-separated.
    #[param(
        pattern = r"^[A-Za-z0-9_.:\-]{1,50}(,[A-Za-z0-9_.:\-]{1,50}){0,99}$",
        example = "aq_jaen"
    )]
    id_entity: Option<String>,
    /// `minLon,minLat,maxLon,maxLat` in degrees.
    #[param(max_length = 100, example = "-4.0,37.0,-3.0,38.0")]
    bbox: Option<String>,
    /// `lat,lon` in degrees; needs `radius_km`.
    #[param(max_length = 60, example = "37.78,-3.79")]
    near: Option<String>,
    /// Distance from `near`, in km; needs `near`.
    #[param(minimum = 0, example = 25)]
    radius_km: Option<f64>,
    #[param(inline)]
    format: Option<PlaceFormat>,
}

/// The parameters of `/air_quality/aggregates`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct AggregateParams {
    #[param(inline)]
    interval: Interval,
    /// Start, inclusive (default: the data's).
    #[param(max_length = 40, example = "2016-10-01")]
    from: Option<String>,
    /// End, exclusive (default: the data's).
    #[param(max_length = 40, example = "2016-11-01")]
    to: Option<String>,
    /// A station id, or up to 100 comma-separated.
    #[param(
        pattern = r"^[A-Za-z0-9_.:\-]{1,50}(,[A-Za-z0-9_.:\-]{1,50}){0,99}$",
        example = "aq_jaen"
    )]
    id_entity: Option<String>,
    /// IANA time zone of the buckets (default: each station's own).
    #[param(max_length = 64, example = "Europe/Madrid")]
    tz: Option<String>,
    #[param(inline)]
    format: Option<TableFormat>,
}

/// The standard of `/air_quality/aqi`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct AqiParams {
    #[param(inline)]
    standard: Option<Standard>,
}

/// The format of `/stations/{id_entity}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub(super) struct FormatParam {
    #[param(inline)]
    format: Option<PlaceFormat>,
}

/// Instead of `Accept`: the answer's format.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum TableFormat {
    Json,
    Csv,
    Ndjson,
}

/// Instead of `Accept`: the answer's format.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum PlaceFormat {
    Json,
    Geojson,
    Csv,
    Ndjson,
}

#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum Order {
    Asc,
    Desc,
}

/// The buckets' length.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
enum Interval {
    Hour,
    Day,
    Week,
    Month,
}

/// `eaqi` (European, default) or `us-epa`.
#[derive(ToSchema)]
#[schema(rename_all = "kebab-case")]
#[allow(dead_code)]
enum Standard {
    Eaqi,
    UsEpa,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_with_every_operation_and_this_limit() {
        let document: Value = serde_json::from_slice(&document(500)).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/air_quality",
            "/air_quality/latest",
            "/air_quality/aggregates",
            "/air_quality/aqi",
            "/stations",
            "/stations/{id_entity}",
        ] {
            let operation = &document["paths"][path]["get"];
            assert!(operation["operationId"].is_string(), "{path}");
            for status in ["200", "400", "406"] {
                assert!(
                    operation["responses"][status].is_object(),
                    "{path} {status}"
                );
            }
        }
        let limit = document["paths"]["/air_quality"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap();
        assert_eq!(limit["schema"]["maximum"], 500);
        let schemas = &document["components"]["schemas"];
        for name in [
            "Measurement",
            "StationListing",
            "Summary",
            "StationIndex",
            "Problem",
        ] {
            assert!(schemas[name].is_object(), "{name}");
        }
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        fn references<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        out.push(target);
                    }
                    map.values().for_each(|v| references(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| references(v, out)),
                _ => {}
            }
        }
        let document: Value = serde_json::from_slice(&document(500)).unwrap();
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 10);
        for target in found {
            let name = target.strip_prefix("#/components/schemas/").unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{target} does not resolve"
            );
        }
    }
}
