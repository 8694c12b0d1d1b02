//! What every answer read from the database carries, built in one place:
//!
//! - a strong `ETag` from the data version and the request's canonical form,
//!   and `Last-Modified` from when the data last changed, so a conditional
//!   request costs one tiny query and no data is read;
//! - `Cache-Control` (`RESPONSE_MAX_AGE_SECONDS`) and `Data-Version`, which
//!   caches compare with the versions announced on `/changes`;
//! - `Surrogate-Key`: the stations in the answer, for caches' purges;
//! - the media type, and `Vary: Accept` where the format is negotiated.

use std::time::SystemTime;

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use service_kit::conditional::{EntityTag, http_date, is_not_modified, truncate_to_seconds};
use xxhash_rust::xxh3::xxh3_64;

use super::AppState;
use crate::store::Snapshot;

/// The response header naming the data version an answer was read from.
const DATA_VERSION: &str = "data-version";
const SURROGATE_KEY: &str = "surrogate-key";

/// The headers of an answer, decided before its body is read.
#[derive(Debug)]
pub(super) struct Answer {
    etag: EntityTag,
    last_modified: SystemTime,
    version: i64,
    cache_control: String,
}

impl Answer {
    /// For the request whose canonical form (endpoint and parameters, every
    /// one spelled out) is `canonical`, read from `snapshot`.
    pub(super) fn new(state: &AppState, snapshot: &Snapshot, canonical: &str) -> Self {
        Self {
            etag: EntityTag::strong(format!(
                "{}-{:016x}",
                snapshot.version,
                xxh3_64(canonical.as_bytes())
            )),
            last_modified: truncate_to_seconds(snapshot.changed_at),
            version: snapshot.version,
            cache_control: state.cache_control.to_string(),
        }
    }

    /// 304 when the client holds this very answer.
    pub(super) fn not_modified(&self, request: &HeaderMap) -> Option<Response> {
        is_not_modified(request, Some(&self.etag), Some(self.last_modified))
            .then(|| (StatusCode::NOT_MODIFIED, self.validators()).into_response())
    }

    /// ETag, Last-Modified, Cache-Control and Data-Version.
    pub(super) fn validators(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut set = |name: HeaderName, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        set(header::ETAG, self.etag.to_string());
        set(header::LAST_MODIFIED, http_date(self.last_modified));
        set(header::CACHE_CONTROL, self.cache_control.clone());
        set(
            HeaderName::from_static(DATA_VERSION),
            self.version.to_string(),
        );
        headers
    }

    /// Every header of a `content_type` answer about `stations`.
    pub(super) fn headers<'a>(
        &self,
        content_type: &'static str,
        stations: impl IntoIterator<Item = &'a str>,
        negotiated: bool,
    ) -> HeaderMap {
        let mut headers = self.validators();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        let keys: Vec<&str> = stations.into_iter().collect();
        if let Ok(keys) = HeaderValue::from_str(&keys.join(" ")) {
            headers.insert(HeaderName::from_static(SURROGATE_KEY), keys);
        }
        if negotiated {
            headers.insert(header::VARY, HeaderValue::from_static("Accept"));
        }
        headers
    }

    /// A whole answer with a JSON `body`.
    pub(super) fn json<'a>(
        &self,
        format: Format,
        stations: impl IntoIterator<Item = &'a str>,
        body: &serde_json::Value,
    ) -> Response {
        let headers = self.headers(format.content_type(), stations, format.negotiated);
        let mut bytes = serde_json::to_vec(body).unwrap_or_default();
        bytes.push(b'\n');
        (headers, bytes).into_response()
    }
}

/// The media type of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Format {
    pub(super) kind: FormatKind,
    /// Whether it was chosen from `Accept` (then `Vary: Accept`).
    negotiated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FormatKind {
    Json,
    GeoJson,
}

/// The media type of GeoJSON (RFC 7946).
const GEO_JSON: &str = "application/geo+json";

impl Format {
    /// `format=json|geojson` wins; else `Accept: application/geo+json` asks
    /// for GeoJSON; else JSON.
    pub(super) fn negotiate(parameter: Option<FormatKind>, request: &HeaderMap) -> Self {
        let kind = parameter.unwrap_or_else(|| {
            if accepts(request, GEO_JSON) {
                FormatKind::GeoJson
            } else {
                FormatKind::Json
            }
        });
        Self {
            kind,
            negotiated: true,
        }
    }

    pub(super) fn content_type(self) -> &'static str {
        match self.kind {
            FormatKind::Json => "application/json",
            FormatKind::GeoJson => GEO_JSON,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self.kind {
            FormatKind::Json => "json",
            FormatKind::GeoJson => "geojson",
        }
    }
}

/// `format`'s values.
pub(super) fn format_parameter(value: &str) -> Result<FormatKind, String> {
    match value {
        "json" => Ok(FormatKind::Json),
        "geojson" => Ok(FormatKind::GeoJson),
        _ => Err("expected json or geojson".into()),
    }
}

/// Whether `Accept` lists `media_type` with a quality above 0.
fn accepts(request: &HeaderMap, media_type: &str) -> bool {
    request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let refused = |p: &str| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            };
            parts
                .next()
                .is_some_and(|m| m.eq_ignore_ascii_case(media_type))
                && !parts.any(refused)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn geojson_is_chosen_by_parameter_first_then_by_accept() {
        let geo = accept("application/geo+json, application/json;q=0.5");
        assert_eq!(Format::negotiate(None, &geo).kind, FormatKind::GeoJson);
        assert_eq!(
            Format::negotiate(Some(FormatKind::Json), &geo).kind,
            FormatKind::Json
        );
        assert_eq!(
            Format::negotiate(None, &accept("*/*")).kind,
            FormatKind::Json
        );
        assert_eq!(
            Format::negotiate(None, &accept("application/geo+json;q=0")).kind,
            FormatKind::Json
        );
        assert_eq!(
            Format::negotiate(None, &HeaderMap::new()).content_type(),
            "application/json"
        );
    }
}
