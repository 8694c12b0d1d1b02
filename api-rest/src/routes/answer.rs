//! What every answer read from the database carries, built in one place:
//!
//! - a strong `ETag` from the data version and the request's canonical form,
//!   and `Last-Modified` from when the data last changed, so a conditional
//!   request costs one tiny query and no data is read;
//! - `Cache-Control` (`RESPONSE_MAX_AGE_SECONDS`) and `Data-Version`, which
//!   caches compare with the versions announced on `/changes`;
//! - `Surrogate-Key`: the stations in the answer, for caches' purges;
//! - the media type, and `Vary: Accept` when `Accept` chose it;
//!
//! and the body, in the negotiated format (see [`crate::encode`]).

use std::pin::pin;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use service_kit::conditional::{EntityTag, http_date, is_not_modified, truncate_to_seconds};
use xxhash_rust::xxh3::xxh3_64;

use super::AppState;
use crate::encode::{self, Encoder, Format, Negotiated, Record, negotiate};
use crate::error::ApiError;
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

    /// Every header of an answer in `format` about `stations`.
    pub(super) fn headers<'a>(
        &self,
        format: Negotiated,
        stations: impl IntoIterator<Item = &'a str>,
    ) -> HeaderMap {
        let mut headers = self.validators();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.format.content_type()),
        );
        let keys: Vec<&str> = stations.into_iter().collect();
        if let Ok(keys) = HeaderValue::from_str(&keys.join(" ")) {
            headers.insert(HeaderName::from_static(SURROGATE_KEY), keys);
        }
        if format.vary {
            headers.insert(header::VARY, HeaderValue::from_static("Accept"));
        }
        headers
    }

    /// A whole answer: `items` about stations, in `format`.
    pub(super) fn collection<R: Record>(
        &self,
        format: Negotiated,
        items: &[R],
        id_of: impl Fn(&R) -> &str,
    ) -> Result<Response, ApiError> {
        let mut encoder = Encoder::start::<R>(format.format);
        let mut body = BytesMut::new();
        for item in items {
            encoder.push(item).map_err(internal)?;
            body.extend(encoder.full_chunk());
        }
        body.extend_from_slice(&encoder.finish());
        let headers = self.headers(format, items.iter().map(id_of));
        Ok((headers, body.freeze()).into_response())
    }

    /// A whole answer: one `item` about station `id`, in `format`.
    pub(super) fn single<R: Record>(
        &self,
        format: Negotiated,
        item: &R,
        id: &str,
    ) -> Result<Response, ApiError> {
        let body = encode::single(format.format, item).map_err(internal)?;
        Ok((self.headers(format, [id]), body).into_response())
    }
}

fn internal(error: serde_json::Error) -> ApiError {
    ApiError::Internal(format!("encoding an answer: {error}"))
}

/// The format of an answer whose records are `R`: `parameter` (the `format`
/// parameter, already checked against what `R` offers) or the best `Accept`
/// allows; 406 when it allows none.
pub(super) fn choose_format<R: Record>(
    parameter: Option<Format>,
    request: &HeaderMap,
) -> Result<Negotiated, ApiError> {
    let accept: Vec<&str> = request
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let accept = (!accept.is_empty()).then(|| accept.join(","));
    let offered = encode::offered::<R>();
    negotiate(parameter, accept.as_deref(), offered)
        .ok_or_else(|| ApiError::NotAcceptable(offered.iter().map(|f| f.content_type()).collect()))
}

/// Reads the `format` parameter: one of the formats `R` offers.
pub(super) fn format_parameter<R: Record>(value: &str) -> Result<Format, String> {
    Format::parse_among(value, encode::offered::<R>())
}

/// Streams records to the client in `format`, in chunks of about
/// [`encode::CHUNK_BYTES`]. An error mid-way is logged and ends the body with
/// an error, which aborts the response: the client sees a truncated transfer,
/// never a short answer that looks complete.
pub(super) fn stream<R: Record + Send + 'static>(
    state: AppState,
    format: Format,
    records: impl Stream<Item = Result<R, ApiError>> + Send + 'static,
    started: Instant,
) -> Body {
    let metrics = state.metrics.clone();
    let body = async_stream::stream! {
        let mut records = pin!(records);
        let mut encoder = Encoder::start::<R>(format);
        let mut unreported = 0_u64;
        let report = |n: u64| metrics.scope(|| metrics::counter!("api_rest_rows_streamed_total").increment(n));
        while let Some(record) = records.next().await {
            let written = record.and_then(|r| encoder.push(&r).map_err(internal));
            if let Err(error) = written {
                tracing::error!(%error, rows = encoder.written(), "error while streaming an answer");
                if let ApiError::Database(e) | ApiError::DatabaseUnavailable(e) = &error {
                    state.record_database(Err(e));
                }
                report(unreported);
                metrics.scope(|| metrics::counter!("api_rest_stream_errors_total").increment(1));
                yield Err(std::io::Error::other("error while streaming"));
                return;
            }
            unreported += 1;
            if let Some(chunk) = encoder.full_chunk() {
                report(std::mem::take(&mut unreported));
                yield Ok(chunk);
            }
        }
        report(unreported);
        state.record_query("stream", started.elapsed());
        yield Ok::<_, std::io::Error>(encoder.finish());
    };
    Body::from_stream(body)
}
