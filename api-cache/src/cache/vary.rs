//! `Vary` (RFC 9111 section 4.1): a stored response is reused only for requests
//! whose varied header fields match those of the request that fetched it, and
//! each variant is stored under its own key.
//!
//! `Accept-Encoding` is not part of a variant: this cache fetches one identity
//! representation and negotiates the content coding itself (see `encoding`).

use http::HeaderMap;
use xxhash_rust::xxh3::xxh3_128;

use super::key::{EntryKey, UrlKey};

/// The varied header names of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Vary {
    /// `Vary: *`: no request can be known to match; never stored.
    Any,
    /// Lower-case names, sorted, without `accept-encoding`.
    Names(Vec<String>),
}

impl Vary {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        let mut names = Vec::new();
        for value in headers.get_all(http::header::VARY).iter() {
            let Ok(value) = value.to_str() else { continue };
            for name in value.split(',').map(|n| n.trim().to_ascii_lowercase()) {
                if name == "*" {
                    return Self::Any;
                }
                if !name.is_empty() && name != "accept-encoding" && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names.sort();
        Self::Names(names)
    }

    pub(crate) fn names(&self) -> &[String] {
        match self {
            Self::Any => &[],
            Self::Names(names) => names,
        }
    }
}

/// The request's value for each varied name: lines combined, whitespace
/// collapsed; `None` when the request does not send the field.
pub(crate) fn request_values(
    names: &[String],
    request: &HeaderMap,
) -> Vec<(String, Option<String>)> {
    names
        .iter()
        .map(|name| (name.clone(), request_value(name, request)))
        .collect()
}

fn request_value(name: &str, request: &HeaderMap) -> Option<String> {
    let lines: Vec<&str> = request
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!lines.is_empty()).then(|| {
        lines
            .join(", ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    })
}

/// The key of the variant selected by `values`.
pub(crate) fn variant_key(url: UrlKey, values: &[(String, Option<String>)]) -> EntryKey {
    let mut text = String::new();
    for (name, value) in values {
        text.push_str(name);
        match value {
            Some(value) => {
                text.push('=');
                text.push_str(value);
            }
            // Absent differs from present-but-empty.
            None => text.push('\u{0}'),
        }
        text.push('\n');
    }
    EntryKey::variant(url, xxh3_128(text.as_bytes()))
}

/// Whether `request` selects the variant that `values` (an entry's varied
/// request values) describe.
pub(crate) fn selects(values: &[(String, Option<String>)], request: &HeaderMap) -> bool {
    values
        .iter()
        .all(|(name, value)| request_value(name, request) == *value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::target::Target;
    use crate::test_support::header_map;

    #[test]
    fn names_are_normalised_and_accept_encoding_is_ours() {
        let vary = Vary::from_headers(&header_map(&[
            ("vary", "Accept-Language, accept-encoding"),
            ("vary", "X-Tenant, accept-language"),
        ]));
        assert_eq!(
            vary,
            Vary::Names(vec!["accept-language".into(), "x-tenant".into()])
        );
        assert_eq!(
            Vary::from_headers(&header_map(&[("vary", "Origin, *")])),
            Vary::Any
        );
        assert_eq!(Vary::from_headers(&HeaderMap::new()), Vary::Names(vec![]));
    }

    #[test]
    fn variants_differ_by_value_and_by_absence() {
        let url = UrlKey::of(&Target::parse("/x", None).unwrap());
        let names = vec!["accept-language".to_owned()];
        let key = |h: &HeaderMap| variant_key(url, &request_values(&names, h));
        let fr = key(&header_map(&[("accept-language", "fr")]));
        assert_eq!(fr, key(&header_map(&[("accept-language", " fr ")])));
        assert_ne!(fr, key(&header_map(&[("accept-language", "de")])));
        assert_ne!(
            key(&HeaderMap::new()),
            key(&header_map(&[("accept-language", "")]))
        );
        assert_eq!(fr.url, url);
        let values = request_values(&names, &header_map(&[("accept-language", "fr")]));
        assert!(selects(&values, &header_map(&[("accept-language", "fr")])));
        assert!(!selects(&values, &header_map(&[("accept-language", "de")])));
    }
}
