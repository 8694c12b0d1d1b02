//! Keyset pagination: a page ends with a `Link: <…&cursor=…>; rel="next"`
//! when more rows follow, and the cursor says where the next page starts.
//!
//! A cursor is opaque to clients: base64url of the last row's key (the
//! columns the answer is ordered by, unique together) and a digest of the
//! query's filters, so that a cursor used with another query is refused
//! rather than silently answered with the wrong rows. The next page is read
//! from a new snapshot as the rows after the key: following `next` never
//! repeats a row or skips one that existed, whatever is inserted meanwhile.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderValue;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// The longest cursor accepted, in characters.
const MAX_CURSOR_LEN: usize = 512;

/// Where a page ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The key of the last row: as text, in the order's columns.
    #[serde(rename = "k")]
    pub key: Vec<String>,
    /// The digest of the filters of the query it belongs to.
    #[serde(rename = "q")]
    query: String,
}

impl Cursor {
    /// The cursor after the row `key` of the query whose filters (everything
    /// but the page size, the cursor and the format) are `filters`.
    pub fn new(key: Vec<String>, filters: &str) -> Self {
        Self {
            key,
            query: digest(filters),
        }
    }

    /// The text clients send back.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Reads the `cursor` parameter of a query whose filters are `filters`
    /// and whose key has `key_len` columns.
    pub fn decode(text: &str, filters: &str, key_len: usize) -> Result<Self, String> {
        let not_ours = || "not a cursor from this API: use the Link of a previous page".to_owned();
        if text.len() > MAX_CURSOR_LEN {
            return Err(not_ours());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| not_ours())?;
        let cursor: Self = serde_json::from_slice(&bytes).map_err(|_| not_ours())?;
        if cursor.key.len() != key_len {
            return Err(not_ours());
        }
        if cursor.query != digest(filters) {
            return Err(
                "this cursor belongs to another query: follow the Link of this query's pages"
                    .to_owned(),
            );
        }
        Ok(cursor)
    }
}

fn digest(filters: &str) -> String {
    format!("{:016x}", xxh3_64(filters.as_bytes()))
}

/// The `Link` to the page after `cursor`: the request's own path and
/// parameters, with `cursor` replaced.
pub fn next_link(path: &str, raw_query: Option<&str>, cursor: &Cursor) -> Option<HeaderValue> {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in form_urlencoded::parse(raw_query.unwrap_or("").as_bytes()) {
        if name != "cursor" {
            query.append_pair(&name, &value);
        }
    }
    query.append_pair("cursor", &cursor.encode());
    HeaderValue::from_str(&format!("<{path}?{}>; rel=\"next\"", query.finish())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor() -> Cursor {
        Cursor::new(
            vec!["2016-10-01T00:00:00Z".into(), "aq_jaen".into()],
            "id_entity=&from=&to=&order=asc",
        )
    }

    #[test]
    fn a_cursor_reads_back_for_its_own_query() {
        let text = cursor().encode();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            Cursor::decode(&text, "id_entity=&from=&to=&order=asc", 2),
            Ok(cursor())
        );
    }

    #[test]
    fn a_cursor_of_another_query_or_not_a_cursor_is_refused() {
        let text = cursor().encode();
        let refused = Cursor::decode(&text, "id_entity=aq_jaen&from=&to=&order=asc", 2);
        assert!(refused.unwrap_err().contains("another query"));
        for junk in ["", "!!!", "e30", &"A".repeat(600)] {
            assert!(Cursor::decode(junk, "", 2).is_err(), "{junk}");
        }
        assert!(Cursor::decode(&text, "id_entity=&from=&to=&order=asc", 1).is_err());
    }

    #[test]
    fn the_next_link_keeps_the_parameters_and_replaces_the_cursor() {
        let link = next_link(
            "/air_quality",
            Some("limit=2&id_entity=aq_jaen&cursor=old"),
            &cursor(),
        )
        .unwrap();
        let link = link.to_str().unwrap();
        assert!(
            link.starts_with("</air_quality?limit=2&id_entity=aq_jaen&cursor="),
            "{link}"
        );
        assert!(link.ends_with(">; rel=\"next\"") && !link.contains("old"));
    }
}
