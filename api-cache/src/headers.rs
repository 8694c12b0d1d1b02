//! Which headers a proxy passes on (RFC 9110 section 7.6): everything
//! end-to-end, including fields it does not know; never hop-by-hop ones, nor
//! those the `Connection` header names. A `Via` entry is added both ways.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// This cache in `Via` (RFC 9110 7.6.3).
pub(crate) const VIA: &str = "1.1 api-cache";

const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Request fields the cache handles itself when it fetches to store: it asks
/// for one full identity representation and answers conditional and range
/// requests from it.
const HANDLED_BY_THE_CACHE: &[HeaderName] = &[
    header::ACCEPT_ENCODING,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect()
}

fn is_hop_by_hop(name: &HeaderName, listed: &[String]) -> bool {
    HOP_BY_HOP.contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || listed.iter().any(|l| l == name.as_str())
}

/// The end-to-end response headers to store or send on, minus `Content-Length`
/// (the server recomputes it). Values that are not visible ASCII are dropped.
pub(crate) fn end_to_end(headers: &HeaderMap) -> Vec<(String, String)> {
    let listed = connection_listed(headers);
    headers
        .iter()
        .filter(|(name, _)| !is_hop_by_hop(name, &listed) && *name != header::CONTENT_LENGTH)
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// How a request goes to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forwarding {
    /// To fill the cache: without the fields the cache handles itself.
    Fill,
    /// Passed through as the client sent it (other methods).
    Untouched,
}

/// The request headers to send to the origin: the client's end-to-end fields
/// (its `Host` becomes `X-Forwarded-Host`), plus `Via` and `X-Forwarded-For`.
pub(crate) fn to_origin(client: &HeaderMap, peer: Option<IpAddr>, mode: Forwarding) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::new();
    for (name, value) in client {
        if is_hop_by_hop(name, &listed) || *name == header::HOST {
            continue;
        }
        if mode == Forwarding::Fill
            && (HANDLED_BY_THE_CACHE.contains(name) || *name == header::CONTENT_LENGTH)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.append(header::VIA, HeaderValue::from_static(VIA));
    if let Some(peer) = peer
        && let Ok(value) = HeaderValue::from_str(&peer.to_string())
    {
        out.append("x-forwarded-for", value);
    }
    if let Some(host) = client.get(header::HOST)
        && !client.contains_key("x-forwarded-host")
    {
        out.insert("x-forwarded-host", host.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::header_map;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_dropped() {
        let headers = header_map(&[
            ("content-type", "application/json"),
            ("connection", "keep-alive, X-Private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "1"),
            ("transfer-encoding", "chunked"),
            ("content-length", "10"),
            ("x-custom", "kept"),
        ]);
        let kept: Vec<String> = end_to_end(&headers).into_iter().map(|(n, _)| n).collect();
        assert_eq!(kept, ["content-type", "x-custom"]);
    }

    #[test]
    fn requests_keep_unknown_fields_and_gain_via_and_forwarded_for() {
        let client = header_map(&[
            ("host", "api.example"),
            ("x-unknown", "yes"),
            ("accept-encoding", "gzip"),
            ("if-none-match", "\"a\""),
            ("authorization", "Bearer t"),
            ("te", "trailers"),
            ("via", "1.1 edge"),
        ]);
        let peer = Some(IpAddr::from([10, 0, 0, 7]));
        let fill = to_origin(&client, peer, Forwarding::Fill);
        assert_eq!(fill["x-unknown"], "yes");
        assert_eq!(fill["authorization"], "Bearer t");
        assert!(!fill.contains_key("accept-encoding") && !fill.contains_key("if-none-match"));
        assert!(!fill.contains_key("host") && !fill.contains_key("te"));
        assert_eq!(fill["x-forwarded-host"], "api.example");
        assert_eq!(fill["x-forwarded-for"], "10.0.0.7");
        let via: Vec<&str> = fill
            .get_all("via")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(via, ["1.1 edge", VIA]);
        let untouched = to_origin(&client, peer, Forwarding::Untouched);
        assert_eq!(untouched["accept-encoding"], "gzip");
        assert_eq!(untouched["if-none-match"], "\"a\"");
    }
}
