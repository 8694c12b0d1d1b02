//! What the cache keeps in Redis, and its byte format. (In memory, a stored
//! response is served through an [`super::entry::Entry`].)
//!
//! Two kinds of values live under a URL's key:
//! - an entry: `AQC2`, a big-endian u32 length, that much JSON metadata
//!   (status, headers, clocks, lifetime, content coding, the varied request
//!   values), then the body as stored (gzip for text);
//! - a Vary index (`AQV2` + JSON list of header names): the URL's responses
//!   vary, and each variant is an entry under its own key (see `vary`).
//!
//! The metadata is small and readable with `redis-cli GET`; the body is not
//! copied into JSON. Anything else (another version, a corrupt write) decodes
//! to an error and is treated as a miss.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use serde::{Deserialize, Serialize};
use service_kit::conditional::EntityTag;

use super::directives::CacheControl;
use super::encoding::Encoding;
use super::freshness::Timing;

const ENTRY_MAGIC: &[u8; 4] = b"AQC2";
const VARY_MAGIC: &[u8; 4] = b"AQV2";

/// A response as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    pub(crate) status: u16,
    /// End-to-end response headers, in order, without `Content-Length`,
    /// `Content-Encoding` and `Age` (the cache sets those itself).
    pub(crate) headers: Vec<(String, String)>,
    /// The body, in `encoding`.
    #[serde(skip)]
    pub(crate) body: Bytes,
    pub(crate) encoding: Encoding,
    /// The body's size once decoded.
    pub(crate) identity_length: u64,
    pub(crate) timing: Timing,
    /// The freshness lifetime computed when stored (or last revalidated).
    pub(crate) lifetime_ms: u64,
    /// The request values of the varied headers that selected this response.
    pub(crate) vary: Vec<(String, Option<String>)>,
    /// `public` or `s-maxage`: may answer requests carrying credentials.
    pub(crate) shared_with_credentials: bool,
    /// The origin's data version this cache knew when it sent the request.
    /// An entry older than the version known now is outdated, whatever its TTL.
    #[serde(default)]
    pub(crate) generation: u64,
}

/// A value found under a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoredValue {
    Entry(StoredResponse),
    /// The URL's responses vary on these (lower-case) header names.
    VaryIndex(Vec<String>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DecodeError {
    #[error("not a cache value of this version")]
    Magic,
    #[error("truncated cache value")]
    Truncated,
    #[error("unreadable metadata: {0}")]
    Meta(String),
}

impl StoredValue {
    /// Decodes without copying the body out of `bytes`.
    pub(crate) fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        if bytes.len() < 4 {
            return Err(DecodeError::Magic);
        }
        match &bytes[..4] {
            m if m == VARY_MAGIC => serde_json::from_slice(&bytes[4..])
                .map(Self::VaryIndex)
                .map_err(|e| DecodeError::Meta(e.to_string())),
            m if m == ENTRY_MAGIC => {
                if bytes.len() < 8 {
                    return Err(DecodeError::Truncated);
                }
                let meta_len =
                    u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
                let body_start = 8usize.checked_add(meta_len).ok_or(DecodeError::Truncated)?;
                if bytes.len() < body_start {
                    return Err(DecodeError::Truncated);
                }
                let mut entry: StoredResponse = serde_json::from_slice(&bytes[8..body_start])
                    .map_err(|e| DecodeError::Meta(e.to_string()))?;
                entry.body = bytes.slice(body_start..);
                Ok(Self::Entry(entry))
            }
            _ => Err(DecodeError::Magic),
        }
    }

    pub(crate) fn encode_vary_index(names: &[String]) -> Vec<u8> {
        let mut out = VARY_MAGIC.to_vec();
        out.extend_from_slice(&serde_json::to_vec(names).unwrap_or_default());
        out
    }
}

impl StoredResponse {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + meta.len() + self.body.len());
        out.extend_from_slice(ENTRY_MAGIC);
        out.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }

    /// Whether `other` is this same response as stored (the body is not
    /// compared: a stored response's body never changes without its clocks).
    pub(crate) fn same_version(&self, other: &Self) -> bool {
        self.timing == other.timing
            && self.lifetime_ms == other.lifetime_ms
            && self.generation == other.generation
            && self.identity_length == other.identity_length
            && self.encoding == other.encoding
            && self.status == other.status
            && self.headers == other.headers
            && self.vary == other.vary
            && self.shared_with_credentials == other.shared_with_credentials
    }

    /// The value of the first header called `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The stored headers as a map (for directive parsing and 304 merging).
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }

    pub(crate) fn cache_control(&self) -> CacheControl {
        CacheControl::from_headers(&self.header_map())
    }

    pub(crate) fn lifetime(&self) -> Duration {
        Duration::from_millis(self.lifetime_ms)
    }

    pub(crate) fn etag(&self) -> Option<EntityTag> {
        self.header("etag").and_then(EntityTag::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    pub(crate) fn sample() -> StoredResponse {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        StoredResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("etag".into(), "\"7-abc\"".into()),
            ],
            body: Bytes::from_static(b"[1,2,3]"),
            encoding: Encoding::Identity,
            identity_length: 7,
            timing: Timing {
                request_time: at,
                response_time: at,
                date: None,
                age_value: 0,
            },
            lifetime_ms: 30_000,
            vary: vec![
                ("accept-language".into(), Some("fr".into())),
                ("x-tenant".into(), None),
            ],
            shared_with_credentials: false,
            generation: 3,
        }
    }

    #[test]
    fn entries_and_vary_indexes_round_trip() {
        let entry = sample();
        assert_eq!(
            StoredValue::decode(&Bytes::from(entry.encode())),
            Ok(StoredValue::Entry(entry))
        );
        let names = vec!["accept-language".to_owned()];
        assert_eq!(
            StoredValue::decode(&Bytes::from(StoredValue::encode_vary_index(&names))),
            Ok(StoredValue::VaryIndex(names))
        );
    }

    #[test]
    fn stored_times_far_off_are_read_without_a_panic() {
        let mut far = sample();
        far.timing.response_time = UNIX_EPOCH + Duration::from_millis(u64::MAX);
        far.timing.request_time = far.timing.response_time;
        let Ok(StoredValue::Entry(read)) = StoredValue::decode(&Bytes::from(far.encode())) else {
            panic!("not read back");
        };
        assert_eq!(read.timing.current_age(UNIX_EPOCH), Duration::ZERO);
    }

    #[test]
    fn a_foreign_or_cut_value_is_an_error_not_a_panic() {
        assert_eq!(
            StoredValue::decode(&Bytes::from_static(b"{\"x\":1}")),
            Err(DecodeError::Magic)
        );
        assert_eq!(
            StoredValue::decode(&Bytes::from_static(b"AQC1....")),
            Err(DecodeError::Magic)
        );
        let encoded = sample().encode();
        assert_eq!(
            StoredValue::decode(&Bytes::copy_from_slice(&encoded[..12])),
            Err(DecodeError::Truncated)
        );
        let mut bad = encoded.clone();
        bad[9] = b'!';
        assert!(matches!(
            StoredValue::decode(&Bytes::from(bad)),
            Err(DecodeError::Meta(_))
        ));
    }

    #[test]
    fn a_version_is_its_metadata() {
        let entry = sample();
        let mut copy = entry.clone();
        copy.body = Bytes::from_static(b"[]");
        assert!(entry.same_version(&copy));
        copy.lifetime_ms = 0;
        assert!(
            !entry.same_version(&copy),
            "a soft purge makes a new version"
        );
        let mut refetched = entry.clone();
        refetched.timing.response_time += Duration::from_millis(1);
        assert!(!entry.same_version(&refetched));
    }

    #[test]
    fn validators_and_directives_come_from_the_stored_headers() {
        let entry = sample();
        assert_eq!(entry.header("ETag"), Some("\"7-abc\""));
        assert_eq!(entry.etag(), Some(EntityTag::strong("7-abc")));
        assert_eq!(entry.lifetime(), Duration::from_secs(30));
    }
}
