//! Content coding: bodies are stored once, gzip-compressed, and sent as stored
//! to clients that accept gzip, decompressed for the others.
//!
//! gzip because every client accepts it, so no request ever pays for
//! transcoding; measured on the full `/air_quality` (1.28 MB), brotli would
//! save 9% more and zstd none (README, "Measured").

use std::io::{Read, Write};

use bytes::Bytes;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use http::{HeaderMap, header};
use serde::{Deserialize, Serialize};

/// Bodies smaller than this are stored as they are.
pub(crate) const MIN_COMPRESS_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    /// Reads the origin's `Content-Encoding`; `None` for codings this cache
    /// cannot decode (such responses are passed through, not stored).
    pub(crate) fn from_response(headers: &HeaderMap) -> Option<Self> {
        match headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
        {
            None | Some("") | Some("identity") => Some(Self::Identity),
            Some(coding)
                if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") =>
            {
                Some(Self::Gzip)
            }
            Some(_) => None,
        }
    }
}

/// Whether the request's `Accept-Encoding` admits gzip (RFC 9110 12.5.3).
pub(crate) fn accepts_gzip(request: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for item in value.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let accepted = parts
                .filter_map(|p| {
                    let (name, q) = p.split_once('=')?;
                    name.trim().eq_ignore_ascii_case("q").then_some(q)
                })
                .find_map(|q| q.trim().parse::<f32>().ok())
                .is_none_or(|q| q > 0.0);
            if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
                gzip = Some(accepted);
            } else if coding == "*" {
                any = Some(accepted);
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// Whether a body of this media type is worth compressing (text-like types).
pub(crate) fn is_compressible(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-ndjson"
                | "image/svg+xml"
        )
}

/// gzip at the default level (6): about 5x on the measurements JSON, ~35 ms per MB.
pub(crate) fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    Bytes::from(encoder.finish().unwrap_or_default())
}

/// Decompresses at most `limit` bytes (a stored body's known identity size):
/// a corrupt or hostile entry cannot make it allocate more.
pub(crate) fn gunzip(data: &[u8], limit: usize) -> std::io::Result<Bytes> {
    let mut out = Vec::with_capacity(limit.min(64 * 1024 * 1024));
    GzDecoder::new(data)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > limit {
        return Err(std::io::Error::other(
            "decompressed body larger than recorded",
        ));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn accept(value: &str) -> bool {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        accepts_gzip(&h)
    }

    #[test]
    fn accept_encoding_is_negotiated_with_q_values() {
        assert!(accept("gzip"));
        assert!(accept("br, gzip;q=0.5, deflate"));
        assert!(accept("*"));
        assert!(!accept("gzip;q=0"));
        assert!(!accept("*, gzip;q=0"));
        assert!(!accept("br, zstd"));
        assert!(!accept("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn round_trips_and_bounds_decompression() {
        let data = "{\"so2\": 1.5}\n".repeat(1000).into_bytes();
        let packed = gzip(&data);
        assert!(packed.len() < data.len() / 10);
        assert_eq!(gunzip(&packed, data.len()).unwrap(), data);
        assert!(gunzip(&packed, data.len() - 1).is_err());
        assert!(gunzip(b"not gzip", 100).is_err());
    }

    #[test]
    fn only_text_like_types_are_compressed() {
        assert!(is_compressible(Some("application/json")));
        assert!(is_compressible(Some(
            "application/problem+json; charset=utf-8"
        )));
        assert!(is_compressible(Some("text/csv")));
        assert!(!is_compressible(Some("image/png")));
        assert!(!is_compressible(None));
    }
}
