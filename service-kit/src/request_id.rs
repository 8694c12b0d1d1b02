//! `X-Request-Id`: every request has one. A client's (or api-cache's) id is
//! kept when it is 1 to 128 characters of letters, digits and `-_.:`;
//! otherwise a UUID v4 is made. The id is on the request (so a proxy passes
//! it on), in the log span of everything the request logs, and on the
//! response (see `telemetry::track_requests`).

use std::cell::Cell;
use std::hash::BuildHasher;

use http::{HeaderMap, HeaderName, HeaderValue};

pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

fn acceptable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The request's id: the one it carries if acceptable, else a new one,
/// which replaces it in `headers`.
pub(crate) fn ensure(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(id) = headers.get(&HEADER).filter(|value| acceptable(value)) {
        return id.clone();
    }
    let id = new_id();
    headers.insert(HEADER, id.clone());
    id
}

/// A UUID v4 from a per-thread generator seeded at random: unique, not a
/// secret, and made without a system call.
fn new_id() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(random_bytes()).into_uuid();
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    let text = uuid.hyphenated().encode_lower(&mut text);
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("-"))
}

fn random_bytes() -> [u8; 16] {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::collections::hash_map::RandomState::new().hash_one(std::thread::current().id()),
        );
    }
    STATE.with(|state| {
        let next = || {
            // wyrand: a small, fast generator with a 2^64 period.
            let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(s);
            let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
            ((t >> 64) as u64) ^ (t as u64)
        };
        let (high, low) = (next(), next());
        let mut bytes = [0; 16];
        bytes[..8].copy_from_slice(&high.to_le_bytes());
        bytes[8..].copy_from_slice(&low.to_le_bytes());
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_bounded_ids_are_kept() {
        assert!(acceptable(&HeaderValue::from_static("3f2a-9c:edge.7_x")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("has space")));
        assert!(!acceptable(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
    }

    #[test]
    fn a_kept_id_stays_and_a_made_one_is_a_fresh_uuid() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER, HeaderValue::from_static("trace-me-42"));
        assert_eq!(ensure(&mut headers), "trace-me-42");
        headers.insert(HEADER, HeaderValue::from_static("bad id"));
        let made = ensure(&mut headers);
        assert_eq!(headers[HEADER], made);
        let text = made.to_str().unwrap();
        let uuid = uuid::Uuid::parse_str(text).unwrap();
        assert_eq!(uuid.get_version_num(), 4);
        let ids: std::collections::HashSet<String> = (0..1000)
            .map(|_| new_id().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), 1000);
    }
}
