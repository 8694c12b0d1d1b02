//! Helpers shared by the unit tests.

use http::{HeaderMap, HeaderValue};

/// A header map from `(name, value)` pairs; repeated names are appended.
pub(crate) fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}
