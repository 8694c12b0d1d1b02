//! A GET or HEAD as the cache sees it, read once from the request: its target
//! and key, its directives, and what it accepts.

use std::net::IpAddr;

use http::request::Parts;
use http::{HeaderMap, Method, header};

use crate::cache::directives::CacheControl;
use crate::cache::encoding::accepts_gzip;
use crate::cache::key::UrlKey;
use crate::cache::policy::RequestFacts;
use crate::cache::target::Target;

#[derive(Debug, Clone)]
pub(super) struct ReadRequest {
    pub(super) target: Target,
    pub(super) url: UrlKey,
    pub(super) headers: HeaderMap,
    /// Its `Cache-Control`, and whether it carries `Authorization` or `Cookie`.
    pub(super) facts: RequestFacts,
    pub(super) head: bool,
    /// `Accept-Encoding` admits gzip.
    pub(super) gzip: bool,
    pub(super) peer: IpAddr,
}

impl ReadRequest {
    pub(super) fn new(parts: Parts, target: Target, peer: IpAddr) -> Self {
        let headers = parts.headers;
        Self {
            url: UrlKey::of(&target),
            target,
            facts: RequestFacts {
                cache_control: CacheControl::from_headers(&headers),
                credentials: headers.contains_key(header::AUTHORIZATION)
                    || headers.contains_key(header::COOKIE),
            },
            head: parts.method == Method::HEAD,
            gzip: accepts_gzip(&headers),
            headers,
            peer,
        }
    }
}
