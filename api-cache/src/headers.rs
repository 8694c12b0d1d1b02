//! Which headers a proxy passes on (RFC 9110 section 7.6.1): everything
//! end-to-end; never hop-by-hop ones, nor those the `Connection` header names.

use http::{HeaderMap, HeaderName, header};

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn is_hop_by_hop(name: &HeaderName, connection_listed: &[String]) -> bool {
    HOP_BY_HOP.contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || connection_listed
            .iter()
            .any(|listed| listed == name.as_str())
}

/// The end-to-end response headers to store and send on, minus `Content-Length`
/// (the server recomputes it). Values that are not visible ASCII are dropped.
pub fn end_to_end(headers: &HeaderMap) -> Vec<(String, String)> {
    let connection_listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    headers
        .iter()
        .filter(|(name, _)| {
            !is_hop_by_hop(name, &connection_listed) && *name != header::CONTENT_LENGTH
        })
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Private"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        headers.insert("x-custom", HeaderValue::from_static("kept"));
        let kept: Vec<String> = end_to_end(&headers).into_iter().map(|(n, _)| n).collect();
        assert_eq!(kept, ["content-type", "x-custom"]);
    }
}
