//! The `Cache-Status` response header (RFC 9211): how this cache handled the
//! request, e.g. `api-cache; hit; ttl=17` or
//! `api-cache; fwd=uri-miss; fwd-status=200; stored; ttl=30`.

/// Why the request went forward to the origin (RFC 9211 section 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
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
pub struct CacheStatus {
    pub hit: bool,
    pub forward: Option<Forward>,
    pub forward_status: Option<u16>,
    pub stored: bool,
    pub collapsed: bool,
    /// Freshness left, in seconds; negative when served stale.
    pub ttl: Option<i64>,
    /// An implementation detail, as an sf-token (e.g. `storage-unavailable`).
    pub detail: Option<&'static str>,
}

/// The cache's name in the header.
pub const NAME: &str = "api-cache";

impl CacheStatus {
    pub fn hit(ttl: i64) -> Self {
        Self {
            hit: true,
            ttl: Some(ttl),
            ..Self::default()
        }
    }

    pub fn forward(forward: Forward) -> Self {
        Self {
            forward: Some(forward),
            ..Self::default()
        }
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        let mut out = String::from(NAME);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(forward) = self.forward {
            out.push_str("; fwd=");
            out.push_str(forward.token());
        }
        if let Some(status) = self.forward_status {
            out.push_str(&format!("; fwd-status={status}"));
        }
        if self.stored {
            out.push_str("; stored");
        }
        if self.collapsed {
            out.push_str("; collapsed");
        }
        if let Some(ttl) = self.ttl {
            out.push_str(&format!("; ttl={ttl}"));
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
