//! A stored response and its byte format in Redis.
//!
//! Layout: the magic `AQC1`, a big-endian u32 length, that many bytes of JSON
//! metadata (status, headers, when it was stored), then the body as is. The
//! metadata is small and readable with `redis-cli GET`; the body is not copied
//! into JSON. A value that does not start with the magic (another format, a
//! corrupt write) decodes to an error and is treated as a miss.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"AQC1";

/// A response as the cache keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    /// End-to-end headers from the origin, in order (hop-by-hop ones removed).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// When the response was received from the origin.
    pub stored_at: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    status: u16,
    headers: Vec<(String, String)>,
    stored_at_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not a cache entry of this version")]
    Magic,
    #[error("truncated cache entry")]
    Truncated,
    #[error("unreadable metadata: {0}")]
    Meta(String),
}

impl StoredResponse {
    pub fn encode(&self) -> Vec<u8> {
        let meta = Meta {
            status: self.status,
            headers: self.headers.clone(),
            stored_at_ms: u64::try_from(
                self.stored_at
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_millis(),
            )
            .unwrap_or(u64::MAX),
        };
        let meta = serde_json::to_vec(&meta).unwrap_or_default();
        let mut out = Vec::with_capacity(8 + meta.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }

    /// Decodes without copying the body out of `bytes`.
    pub fn decode(bytes: &Bytes) -> Result<Self, DecodeError> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(DecodeError::Magic);
        }
        let meta_len = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
        let body_start = 8usize.checked_add(meta_len).ok_or(DecodeError::Truncated)?;
        if bytes.len() < body_start {
            return Err(DecodeError::Truncated);
        }
        let meta: Meta = serde_json::from_slice(&bytes[8..body_start])
            .map_err(|e| DecodeError::Meta(e.to_string()))?;
        Ok(Self {
            status: meta.status,
            headers: meta.headers,
            body: bytes.slice(body_start..),
            stored_at: UNIX_EPOCH + Duration::from_millis(meta.stored_at_ms),
        })
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StoredResponse {
        StoredResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"[1,2,3]"),
            stored_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
        }
    }

    #[test]
    fn round_trips() {
        let entry = sample();
        assert_eq!(
            StoredResponse::decode(&Bytes::from(entry.encode())),
            Ok(entry)
        );
    }

    #[test]
    fn a_foreign_or_cut_value_is_an_error_not_a_panic() {
        assert_eq!(
            StoredResponse::decode(&Bytes::from_static(b"{\"x\":1}")),
            Err(DecodeError::Magic)
        );
        let encoded = sample().encode();
        assert_eq!(
            StoredResponse::decode(&Bytes::copy_from_slice(&encoded[..12])),
            Err(DecodeError::Truncated)
        );
        let mut bad = encoded.clone();
        bad[9] = b'!';
        assert!(matches!(
            StoredResponse::decode(&Bytes::from(bad)),
            Err(DecodeError::Meta(_))
        ));
    }

    #[test]
    fn headers_are_found_case_insensitively() {
        assert_eq!(sample().header("Content-Type"), Some("application/json"));
        assert_eq!(sample().header("etag"), None);
    }
}
