//! An entry as the cache serves it: a [`StoredResponse`] with everything a hit
//! needs worked out once, when the entry is made, instead of on every hit:
//! its directives and validators parsed, and its body in each representation it
//! can be sent in (identity, and gzip when stored compressed), each with its
//! response headers built.
//!
//! A body stored gzip-compressed is decoded once: from a fill the origin's
//! identity bytes are at hand ([`Entry::with_identity`]); from Redis it is
//! decoded once per copy in the in-process tier ([`Entry::decode`]). No hit
//! decompresses.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use service_kit::conditional::{EntityTag, parse_http_date};

use super::directives::CacheControl;
use super::encoding::{Encoding, gunzip};
use super::status::{CACHE_STATUS, CacheStatus, X_CACHE};
use super::stored::StoredResponse;
use crate::headers::VIA;

/// A stored response, ready to serve.
#[derive(Debug)]
pub(crate) struct Entry {
    stored: StoredResponse,
    cache_control: CacheControl,
    last_modified: Option<SystemTime>,
    identity: Representation,
    /// The stored gzip body, for clients that accept gzip.
    gzip: Option<Representation>,
}

/// One form of the body and the headers that go with it: the stored
/// end-to-end fields, `ETag` (weak for the gzip form, a transformation of the
/// origin's representation, as web servers do), `Vary`, `Content-Encoding`,
/// `Content-Length`, `Via`, and slots for `Age`, `Cache-Status` and `X-Cache`,
/// which each response fills in.
#[derive(Debug)]
pub(crate) struct Representation {
    pub(crate) body: Bytes,
    pub(crate) headers: HeaderMap,
    pub(crate) etag: Option<EntityTag>,
}

#[derive(Debug, thiserror::Error)]
#[error("the stored gzip body cannot be decoded: {0}")]
pub(crate) struct UnreadableBody(#[from] std::io::Error);

/// Stored fields a client never sees: validators and `Vary` are rebuilt per
/// representation; surrogate keys are for this cache's purges.
const NOT_FOR_CLIENTS: &[&str] = &["etag", "vary", "surrogate-key"];

/// Fields a 304 carries (RFC 9110 15.4.5), besides the validators and this cache's own.
const NOT_MODIFIED_FIELDS: &[&str] = &["cache-control", "content-location", "date", "expires"];

impl Entry {
    /// The entry for a response read back from the shared store: a gzip body
    /// is decoded here, once.
    pub(crate) fn decode(stored: StoredResponse) -> Result<Self, UnreadableBody> {
        let identity = match stored.encoding {
            Encoding::Identity => stored.body.clone(),
            Encoding::Gzip => {
                let limit = usize::try_from(stored.identity_length).unwrap_or(usize::MAX);
                gunzip(&stored.body, limit)?
            }
        };
        Ok(Self::with_identity(stored, identity))
    }

    /// The entry for a response whose decoded body is at hand (a fill, or a
    /// revalidation of an entry held in memory).
    pub(crate) fn with_identity(stored: StoredResponse, identity: Bytes) -> Self {
        let cache_control = stored.cache_control();
        let etag = stored.etag();
        let last_modified = stored.header("last-modified").and_then(parse_http_date);
        let gzip = (stored.encoding == Encoding::Gzip).then(|| {
            let weak = etag.as_ref().map(EntityTag::weakened);
            Representation::new(&stored, stored.body.clone(), weak, true)
        });
        let identity = Representation::new(&stored, identity, etag, false);
        Self {
            stored,
            cache_control,
            last_modified,
            identity,
            gzip,
        }
    }

    pub(crate) fn stored(&self) -> &StoredResponse {
        &self.stored
    }

    /// The response's `Cache-Control`, parsed.
    pub(crate) fn cache_control(&self) -> &CacheControl {
        &self.cache_control
    }

    pub(crate) fn last_modified(&self) -> Option<SystemTime> {
        self.last_modified
    }

    pub(crate) fn lifetime(&self) -> Duration {
        self.stored.lifetime()
    }

    pub(crate) fn age(&self, now: SystemTime) -> Duration {
        self.stored.timing.current_age(now)
    }

    /// The form to send: gzip when the client accepts it and it is stored so.
    pub(crate) fn representation(&self, gzip_accepted: bool) -> &Representation {
        match &self.gzip {
            Some(gzip) if gzip_accepted => gzip,
            _ => &self.identity,
        }
    }

    /// Bytes it holds, for the in-process tier's bound.
    pub(crate) fn weight(&self) -> usize {
        let representation = |r: &Representation| {
            r.body.len()
                + r.headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len() + 32)
                    .sum::<usize>()
        };
        representation(&self.identity) + self.gzip.as_ref().map_or(0, representation) + 512
    }

    /// The headers of a 304 for `representation` (RFC 9110 15.4.5).
    pub(crate) fn not_modified_headers(&self, representation: &Representation) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in representation.headers.iter() {
            let keep = NOT_MODIFIED_FIELDS.contains(&name.as_str())
                || name == header::ETAG
                || name == header::VARY
                || name == header::VIA
                || is_cache_slot(name);
            if keep {
                headers.append(name.clone(), value.clone());
            }
        }
        headers
    }
}

fn is_cache_slot(name: &HeaderName) -> bool {
    name == header::AGE || name == CACHE_STATUS || name == X_CACHE
}

impl Representation {
    fn new(stored: &StoredResponse, body: Bytes, etag: Option<EntityTag>, gzip: bool) -> Self {
        let mut headers = HeaderMap::with_capacity(stored.headers.len() + 8);
        for (name, value) in &stored.headers {
            if !NOT_FOR_CLIENTS.contains(&name.as_str()) {
                append(&mut headers, name, value);
            }
        }
        if let Some(etag) = &etag {
            append(&mut headers, "etag", &etag.to_string());
        }
        let mut vary: Vec<&str> = stored
            .headers
            .iter()
            .filter(|(name, _)| name == "vary")
            .flat_map(|(_, value)| value.split(',').map(str::trim))
            .filter(|v| !v.is_empty())
            .collect();
        if stored.encoding == Encoding::Gzip
            && !vary
                .iter()
                .any(|v| v.eq_ignore_ascii_case("accept-encoding"))
        {
            vary.push("Accept-Encoding");
        }
        if !vary.is_empty() {
            append(&mut headers, "vary", &vary.join(", "));
        }
        if gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        headers.append(header::VIA, HeaderValue::from_static(VIA));
        // Slots each response fills in: inserting into them does not grow the map.
        headers.insert(header::AGE, HeaderValue::from_static("0"));
        headers.insert(CACHE_STATUS, HeaderValue::from_static(super::status::NAME));
        headers.insert(X_CACHE, HeaderValue::from_static("HIT"));
        Self {
            body,
            headers,
            etag,
        }
    }

    /// The headers of an answer from this representation: `Age`,
    /// `Cache-Status` and `X-Cache` set.
    pub(crate) fn headers_for(
        &self,
        age: Duration,
        status: &CacheStatus,
        x_cache: &'static str,
    ) -> HeaderMap {
        let mut headers = self.headers.clone();
        set_cache_headers(&mut headers, age, status, x_cache);
        headers
    }
}

/// Sets this cache's own response fields.
pub(crate) fn set_cache_headers(
    headers: &mut HeaderMap,
    age: Duration,
    status: &CacheStatus,
    x_cache: &'static str,
) {
    headers.insert(header::AGE, HeaderValue::from(age.as_secs()));
    headers.insert(CACHE_STATUS, status.header());
    headers.insert(X_CACHE, HeaderValue::from_static(x_cache));
}

fn append(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.append(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::encoding::gzip;
    use crate::cache::freshness::Timing;

    fn stored(body: &[u8], encoding: Encoding, identity_length: usize) -> StoredResponse {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        StoredResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("etag".into(), "\"7-abc\"".into()),
                ("vary".into(), "Accept-Language".into()),
                ("surrogate-key".into(), "aq_jaen".into()),
                ("cache-control".into(), "max-age=30".into()),
            ],
            body: Bytes::copy_from_slice(body),
            encoding,
            identity_length: identity_length as u64,
            timing: Timing {
                request_time: now,
                response_time: now,
                date: None,
                age_value: 0,
            },
            lifetime_ms: 30_000,
            vary: vec![],
            shared_with_credentials: false,
            generation: 1,
        }
    }

    #[test]
    fn a_gzip_entry_is_decoded_once_and_serves_both_forms() {
        let text = "[{\"so2\": 1.5}]\n".repeat(200);
        let entry =
            Entry::decode(stored(&gzip(text.as_bytes()), Encoding::Gzip, text.len())).unwrap();
        let identity = entry.representation(false);
        assert_eq!(identity.body, text.as_bytes());
        assert_eq!(identity.headers[header::ETAG], "\"7-abc\"");
        assert!(identity.headers.get(header::CONTENT_ENCODING).is_none());
        assert_eq!(
            identity.headers[header::CONTENT_LENGTH],
            text.len().to_string().as_str()
        );
        let encoded = entry.representation(true);
        assert_eq!(encoded.headers[header::CONTENT_ENCODING], "gzip");
        assert_eq!(encoded.headers[header::ETAG], "W/\"7-abc\"");
        assert_eq!(
            encoded.headers[header::VARY],
            "Accept-Language, Accept-Encoding"
        );
        for representation in [identity, encoded] {
            assert!(representation.headers.get("surrogate-key").is_none());
            assert_eq!(representation.headers[header::VIA], VIA);
        }
        assert!(entry.weight() > text.len());
    }

    #[test]
    fn an_identity_entry_has_one_form_and_a_corrupt_gzip_body_is_refused() {
        let entry = Entry::decode(stored(b"[1]", Encoding::Identity, 3)).unwrap();
        assert_eq!(entry.representation(true).body, "[1]");
        assert!(
            entry
                .representation(true)
                .headers
                .get(header::CONTENT_ENCODING)
                .is_none()
        );
        assert_eq!(
            entry.representation(true).headers[header::VARY],
            "Accept-Language"
        );
        assert!(Entry::decode(stored(b"not gzip", Encoding::Gzip, 100)).is_err());
    }

    #[test]
    fn answers_fill_in_the_cache_slots_and_304s_keep_only_their_fields() {
        let entry = Entry::with_identity(
            stored(b"[1]", Encoding::Identity, 3),
            Bytes::from_static(b"[1]"),
        );
        let representation = entry.representation(false);
        let headers =
            representation.headers_for(Duration::from_secs(7), &CacheStatus::hit(23), "HIT");
        assert_eq!(headers[header::AGE], "7");
        assert_eq!(headers["cache-status"], "api-cache; hit; ttl=23");
        assert_eq!(headers["x-cache"], "HIT");
        assert_eq!(headers.get_all(header::AGE).iter().count(), 1);
        let not_modified = entry.not_modified_headers(representation);
        assert!(not_modified.get(header::CONTENT_TYPE).is_none());
        assert!(not_modified.get(header::CONTENT_LENGTH).is_none());
        assert_eq!(not_modified[header::CACHE_CONTROL], "max-age=30");
        assert_eq!(not_modified[header::ETAG], "\"7-abc\"");
    }
}
