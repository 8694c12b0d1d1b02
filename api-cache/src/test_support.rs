//! Helpers shared by the unit tests.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

/// A header map from `(name, value)` pairs; repeated names are appended.
pub(crate) fn header_map(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

/// Polls `check` for up to five seconds; whether it became true. For states
/// that arrive by themselves (a background write), not for timing claims.
pub(crate) async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}
