//! The steps every answer about stations shares: open a snapshot, refuse
//! station ids that do not exist (404), answer 304 when the client holds the
//! answer already; and read a request about the stations a filter picks.

use axum::response::Response;
use http::HeaderMap;

use super::AppState;
use super::answer::{Answer, choose_format, format_parameter};
use crate::encode::{Negotiated, Record};
use crate::error::ApiError;
use crate::params::{InvalidParam, Params};
use crate::stations::StationFilter;
use crate::store::Snapshot;

/// What [`open`] found.
pub(super) enum Opened {
    /// The client holds this answer: 304.
    NotModified(Response),
    /// Read the answer from the snapshot, and send it with these headers.
    Read(Snapshot, Answer),
}

/// Opens a snapshot for the request whose canonical form is `canonical`,
/// about the stations `ids` (all when empty).
pub(super) async fn open(
    state: &AppState,
    request: &HeaderMap,
    ids: &[String],
    canonical: &str,
) -> Result<Opened, ApiError> {
    let mut snapshot = state.snapshot().await?;
    let unknown = snapshot.unknown_stations(ids).await?;
    if !unknown.is_empty() {
        return Err(ApiError::UnknownStations(unknown));
    }
    let answer = Answer::new(state, &snapshot, canonical);
    Ok(match answer.not_modified(request) {
        Some(not_modified) => Opened::NotModified(not_modified),
        None => Opened::Read(snapshot, answer),
    })
}

/// A request about the stations a filter picks, answered with records `R`.
#[derive(Debug)]
pub(super) struct StationsRequest<E> {
    pub(super) filter: StationFilter,
    pub(super) format: Negotiated,
    /// The endpoint's own parameters.
    pub(super) extra: E,
}

impl<E> StationsRequest<E> {
    /// Reads the filter, `format`, and what `read_extra` reads of `extra_names`.
    pub(super) fn parse<R: Record>(
        raw: Option<&str>,
        request: &HeaderMap,
        extra_names: &[&str],
        read_extra: impl FnOnce(&mut Params) -> E,
    ) -> Result<Self, ApiError> {
        let accepted: Vec<&str> = StationFilter::PARAMETERS
            .iter()
            .chain(&["format"])
            .chain(extra_names)
            .copied()
            .collect();
        let mut params = Params::parse(raw, &accepted);
        let filter = StationFilter::read(&mut params);
        let format = params.get("format", format_parameter::<R>);
        let extra = read_extra(&mut params);
        let (filter, format, extra) = params
            .finish((filter, format, extra))
            .map_err(ApiError::InvalidParameters)?;
        Ok(Self {
            filter,
            format: choose_format::<R>(format, request)?,
            extra,
        })
    }

    /// `endpoint?<filter>&format=…` plus the endpoint's own part.
    pub(super) fn canonical(&self, endpoint: &str, extra: &str) -> String {
        format!(
            "{endpoint}?{extra}&{}&format={}",
            self.filter.canonical(),
            self.format.format.name()
        )
    }
}

/// A 400 about one parameter.
pub(super) fn invalid(name: &str, value: &str, reason: String) -> ApiError {
    ApiError::InvalidParameters(vec![InvalidParam::new(name, value, reason)])
}
