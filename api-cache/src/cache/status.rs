//! How this cache handled a request, as clients and operators see it: the
//! `Cache-Status` response header (RFC 9211), e.g. `api-cache; hit; ttl=17`
//! or `api-cache; fwd=uri-miss; fwd-status=200; stored; ttl=30`, and the
//! [`Outcome`] behind `X-Cache` and the `api_cache_requests_total` metric.

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// `Cache-Status`, and `X-Cache` for people who grep for it.
pub(crate) const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
pub(crate) const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// How a response was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From the cache, fresh.
    Hit,
    /// From the cache, stale (the request's `max-stale` allowed it).
    Stale,
    /// From the origin (a new body).
    Miss,
    /// From the cache after the origin answered 304.
    Revalidated,
    /// From the origin, fetched by a concurrent identical request.
    Collapsed,
    /// The cache was not used: unavailable, or the request not cacheable.
    Bypass,
    /// Another method, passed to the origin.
    Pass,
    /// The origin failed.
    Error,
}

impl Outcome {
    /// Every outcome, in declaration order (`outcome as usize` indexes it).
    pub(crate) const ALL: [Outcome; 8] = [
        Self::Hit,
        Self::Stale,
        Self::Miss,
        Self::Revalidated,
        Self::Collapsed,
        Self::Bypass,
        Self::Pass,
        Self::Error,
    ];

    pub(crate) fn x_cache(self) -> &'static str {
        match self {
            Self::Hit | Self::Stale => "HIT",
            Self::Miss | Self::Revalidated | Self::Collapsed | Self::Error => "MISS",
            Self::Bypass | Self::Pass => "BYPASS",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Miss => "miss",
            Self::Revalidated => "revalidated",
            Self::Collapsed => "collapsed",
            Self::Bypass => "bypass",
            Self::Pass => "pass",
            Self::Error => "error",
        }
    }
}

/// Why the request went forward to the origin (RFC 9211 section 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forward {
    /// The cache was not used (storage unavailable, or the request not cacheable).
    Bypass,
    /// The method is not cacheable.
    Method,
    /// Nothing stored for the URL.
    UriMiss,
    /// Stored, but not for this request's varied headers.
    VaryMiss,
    /// Not found, storage unavailable.
    Miss,
    /// The request asked to skip the stored copy (`no-cache`, `max-age=0`, ...).
    Request,
    /// The stored copy was stale: revalidated or refetched.
    Stale,
}

impl Forward {
    fn token(self) -> &'static str {
        match self {
            Self::Bypass => "bypass",
            Self::Method => "method",
            Self::UriMiss => "uri-miss",
            Self::VaryMiss => "vary-miss",
            Self::Miss => "miss",
            Self::Request => "request",
            Self::Stale => "stale",
        }
    }
}

/// One `Cache-Status` entry of this cache.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CacheStatus {
    pub(crate) hit: bool,
    pub(crate) forward: Option<Forward>,
    pub(crate) forward_status: Option<u16>,
    pub(crate) stored: bool,
    pub(crate) collapsed: bool,
    /// Freshness left, in seconds; negative when served stale.
    pub(crate) ttl: Option<i64>,
    /// An implementation detail, as an sf-token (e.g. `storage-unavailable`).
    pub(crate) detail: Option<&'static str>,
}

/// The cache's name in the header.
pub(crate) const NAME: &str = "api-cache";

impl CacheStatus {
    pub(crate) fn hit(ttl: i64) -> Self {
        Self {
            hit: true,
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    pub(crate) fn forward(forward: Forward) -> Self {
        Self {
            forward: Some(forward),
            ..Self::default()
        }
    }

    /// The same, with an implementation detail (an sf-token).
    pub(crate) fn detail(self, detail: &'static str) -> Self {
        Self {
            detail: Some(detail),
            ..self
        }
    }

    /// The header, as sent.
    pub(crate) fn header(&self) -> HeaderValue {
        HeaderValue::from_maybe_shared(Bytes::from(self.header_value()))
            .unwrap_or(HeaderValue::from_static(NAME))
    }

    /// The header value.
    pub(crate) fn header_value(&self) -> String {
        let mut out = String::with_capacity(64);
        out.push_str(NAME);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(forward) = self.forward {
            out.push_str("; fwd=");
            out.push_str(forward.token());
        }
        if let Some(status) = self.forward_status {
            out.push_str("; fwd-status=");
            out.push_str(itoa::Buffer::new().format(status));
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            out.push_str("; ttl=");
            out.push_str(itoa::Buffer::new().format(ttl));
        }
        if let Some(detail) = self.detail {
            out.push_str("; detail=");
            out.push_str(detail);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_index_their_list() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(*outcome as usize, i);
        }
    }

    #[test]
    fn renders_the_rfc_9211_examples() {
        assert_eq!(
            CacheStatus::hit(17).header_value(),
            "api-cache; hit; ttl=17"
        );
        let stored = CacheStatus {
            forward_status: Some(200),
            stored: true,
            ttl: Some(30),
            ..CacheStatus::forward(Forward::UriMiss)
        };
        assert_eq!(
            stored.header_value(),
            "api-cache; fwd=uri-miss; fwd-status=200; stored; ttl=30"
        );
        let collapsed = CacheStatus {
            collapsed: true,
            ..CacheStatus::forward(Forward::UriMiss)
        };
        assert_eq!(
            collapsed.header_value(),
            "api-cache; fwd=uri-miss; collapsed"
        );
        let down = CacheStatus {
            detail: Some("storage-unavailable"),
            ..CacheStatus::forward(Forward::Miss)
        };
        assert_eq!(
            down.header_value(),
            "api-cache; fwd=miss; detail=storage-unavailable"
        );
    }
}
