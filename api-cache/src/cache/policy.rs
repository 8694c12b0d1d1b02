//! What may be stored, and for how long (RFC 9111 section 3, for a shared cache).

use std::time::Duration;

use http::{HeaderMap, header};

use super::directives::CacheControl;
use super::encoding::Encoding;
use super::freshness::{
    Lifetime, Timing, freshness_lifetime, stale_if_error_window, stale_while_revalidate_window,
};
use super::vary::Vary;

/// The storage rules in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    /// `CACHE_TTL_SECONDS`: the lifetime of a response that declares none;
    /// zero keeps only what the origin declares.
    pub(crate) default_ttl: Duration,
    /// `CACHE_GRACE_SECONDS`: how long an entry stays in Redis after it goes
    /// stale: to be revalidated (a 304 instead of a new body) and served when
    /// the origin fails (unless the origin's directives say otherwise).
    pub(crate) grace: Duration,
    /// `CACHE_STALE_WHILE_REVALIDATE_SECONDS`: the default background-refresh
    /// window (zero: off, so freshness stays exactly what it is).
    pub(crate) stale_while_revalidate: Duration,
    /// `CACHE_MAX_BODY_BYTES`; larger bodies are passed through, not stored.
    pub(crate) max_body_bytes: usize,
    /// `CACHE_COMPRESSION=gzip`: store text bodies gzip-compressed.
    pub(crate) compress: bool,
}

/// Why a response was not stored (the `detail` of `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotStored {
    RequestNoStore,
    NoStore,
    Private,
    ServerError,
    Status,
    SetCookie,
    VaryAny,
    Credentials,
    TooLarge,
    Encoding,
    NoFreshness,
    /// Another request for the same response is storing it.
    Concurrent,
    /// Passed through as it streamed: the fill buffer budget was spent.
    BufferBudget,
    /// Read from data older than a change already announced (a lagging
    /// replica): storing it would undo the change for later requests.
    Outdated,
}

impl NotStored {
    /// An sf-token for `Cache-Status: ...; detail=`.
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::RequestNoStore => "request-no-store",
            Self::NoStore => "no-store",
            Self::Private => "private",
            Self::ServerError => "server-error",
            Self::Status => "status",
            Self::SetCookie => "set-cookie",
            Self::VaryAny => "vary-any",
            Self::Credentials => "credentials",
            Self::TooLarge => "too-large",
            Self::Encoding => "encoding",
            Self::NoFreshness => "no-freshness",
            Self::Concurrent => "concurrent-fetch",
            Self::BufferBudget => "buffer-budget",
            Self::Outdated => "outdated",
        }
    }
}

/// What is known of the request when its response comes back.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestFacts {
    pub(crate) cache_control: CacheControl,
    /// The request carries `Authorization` or `Cookie`.
    pub(crate) credentials: bool,
}

/// A response's storage terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Storable {
    pub(crate) lifetime: Lifetime,
    /// Lifetime plus grace: every key expires.
    pub(crate) redis_ttl: Duration,
    pub(crate) shared_with_credentials: bool,
    pub(crate) vary: Vec<String>,
}

impl Policy {
    /// Decides whether to store a response of `status` with `headers`, whose
    /// decoded body is `identity_length` bytes.
    pub(crate) fn storable(
        &self,
        request: &RequestFacts,
        status: u16,
        headers: &HeaderMap,
        identity_length: usize,
        timing: &Timing,
    ) -> Result<Storable, NotStored> {
        let cc = CacheControl::from_headers(headers);
        if request.cache_control.no_store {
            return Err(NotStored::RequestNoStore);
        }
        if cc.no_store {
            return Err(NotStored::NoStore);
        }
        if cc.private {
            return Err(NotStored::Private);
        }
        if status >= 500 {
            return Err(NotStored::ServerError);
        }
        // 1xx, 206 (ranges are not combined here) and 304 are never stored as such.
        if !(200..500).contains(&status) || status == 206 || status == 304 {
            return Err(NotStored::Status);
        }
        if headers.contains_key(header::SET_COOKIE) {
            return Err(NotStored::SetCookie);
        }
        let vary = match Vary::from_headers(headers) {
            Vary::Any => return Err(NotStored::VaryAny),
            Vary::Names(names) => names,
        };
        let shared_with_credentials = cc.public || cc.s_maxage.is_some();
        if request.credentials && !shared_with_credentials {
            return Err(NotStored::Credentials);
        }
        if identity_length > self.max_body_bytes {
            return Err(NotStored::TooLarge);
        }
        if Encoding::from_response(headers).is_none() {
            return Err(NotStored::Encoding);
        }
        let lifetime = freshness_lifetime(status, &cc, headers, timing, self.default_ttl);
        let has_validators =
            headers.contains_key(header::ETAG) || headers.contains_key(header::LAST_MODIFIED);
        // Kept past freshness for the longest stale use allowed.
        let stale_use = self
            .grace
            .max(stale_if_error_window(&cc, self.grace).unwrap_or_default())
            .max(stale_while_revalidate_window(
                &cc,
                self.stale_while_revalidate,
            ));
        let keep = match lifetime {
            Lifetime::Unknown => return Err(NotStored::NoFreshness),
            // Stale at once: worth keeping only to revalidate it.
            _ if lifetime.duration().is_zero() && (!has_validators || stale_use.is_zero()) => {
                return Err(NotStored::NoFreshness);
            }
            _ => lifetime.duration().saturating_add(stale_use),
        };
        Ok(Storable {
            lifetime,
            redis_ttl: keep.max(Duration::from_secs(1)),
            shared_with_credentials,
            vary,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::{SystemTime, UNIX_EPOCH};

    const POLICY: Policy = Policy {
        default_ttl: Duration::from_secs(30),
        grace: Duration::from_secs(60),
        max_body_bytes: 100,
        compress: true,
        stale_while_revalidate: Duration::ZERO,
    };

    fn timing() -> Timing {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Timing {
            request_time: now,
            response_time: now,
            date: Some(now),
            age_value: 0,
        }
    }

    fn decide(
        request: &RequestFacts,
        status: u16,
        pairs: &[(&'static str, &str)],
    ) -> Result<Storable, NotStored> {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        POLICY.storable(request, status, &headers, 10, &timing())
    }

    fn plain() -> RequestFacts {
        RequestFacts::default()
    }

    #[test]
    fn the_default_ttl_applies_only_when_the_origin_says_nothing() {
        let stored = decide(&plain(), 200, &[]).unwrap();
        assert_eq!(
            stored.lifetime,
            Lifetime::Heuristic(Duration::from_secs(30))
        );
        assert_eq!(
            stored.redis_ttl,
            Duration::from_secs(90),
            "lifetime plus grace"
        );
        let stored = decide(&plain(), 200, &[("cache-control", "max-age=5")]).unwrap();
        assert_eq!(stored.lifetime, Lifetime::Explicit(Duration::from_secs(5)));
        let strict = Policy {
            default_ttl: Duration::ZERO,
            ..POLICY
        };
        assert_eq!(
            strict.storable(&plain(), 200, &HeaderMap::new(), 10, &timing()),
            Err(NotStored::NoFreshness)
        );
        let _ = SystemTime::now();
    }

    #[test]
    fn what_a_shared_cache_must_not_store() {
        assert_eq!(
            decide(&plain(), 200, &[("cache-control", "no-store")]),
            Err(NotStored::NoStore)
        );
        assert_eq!(
            decide(&plain(), 200, &[("cache-control", "private, max-age=60")]),
            Err(NotStored::Private)
        );
        assert_eq!(
            decide(&plain(), 503, &[("cache-control", "max-age=60")]),
            Err(NotStored::ServerError)
        );
        assert_eq!(
            decide(&plain(), 200, &[("set-cookie", "a=b")]),
            Err(NotStored::SetCookie)
        );
        assert_eq!(
            decide(&plain(), 200, &[("vary", "*")]),
            Err(NotStored::VaryAny)
        );
        assert_eq!(
            decide(&plain(), 206, &[("cache-control", "max-age=60")]),
            Err(NotStored::Status)
        );
        assert_eq!(
            decide(&plain(), 302, &[]),
            Err(NotStored::NoFreshness),
            "302 needs explicit freshness"
        );
        assert!(decide(&plain(), 302, &[("cache-control", "max-age=60")]).is_ok());
        assert_eq!(
            decide(&plain(), 200, &[("content-encoding", "br")]),
            Err(NotStored::Encoding)
        );
        let no_store_request = RequestFacts {
            cache_control: CacheControl::parse("no-store"),
            ..plain()
        };
        assert_eq!(
            decide(&no_store_request, 200, &[]),
            Err(NotStored::RequestNoStore)
        );
        assert_eq!(
            POLICY.storable(&plain(), 200, &HeaderMap::new(), 101, &timing()),
            Err(NotStored::TooLarge)
        );
    }

    #[test]
    fn requests_with_credentials_store_only_public_or_s_maxage_responses() {
        let credentials = RequestFacts {
            credentials: true,
            ..plain()
        };
        assert_eq!(
            decide(&credentials, 200, &[("cache-control", "max-age=60")]),
            Err(NotStored::Credentials)
        );
        assert!(
            decide(
                &credentials,
                200,
                &[("cache-control", "public, max-age=60")]
            )
            .unwrap()
            .shared_with_credentials
        );
        assert!(decide(&credentials, 200, &[("cache-control", "s-maxage=60")]).is_ok());
    }

    #[test]
    fn entries_are_kept_for_the_longest_stale_use_allowed() {
        let kept = decide(
            &plain(),
            200,
            &[("cache-control", "max-age=10, stale-if-error=600")],
        )
        .unwrap();
        assert_eq!(kept.redis_ttl, Duration::from_secs(610));
        let kept = decide(
            &plain(),
            200,
            &[("cache-control", "max-age=10, stale-while-revalidate=5")],
        )
        .unwrap();
        assert_eq!(
            kept.redis_ttl,
            Duration::from_secs(70),
            "the grace (60) is longer"
        );
    }

    #[test]
    fn stale_at_once_is_kept_only_with_validators_to_revalidate() {
        assert_eq!(
            decide(&plain(), 200, &[("cache-control", "max-age=0")]),
            Err(NotStored::NoFreshness)
        );
        let kept = decide(
            &plain(),
            200,
            &[("cache-control", "max-age=0"), ("etag", "\"x\"")],
        )
        .unwrap();
        assert_eq!(kept.redis_ttl, Duration::from_secs(60));
        assert_eq!(
            decide(&plain(), 200, &[("vary", "Accept-Language")])
                .unwrap()
                .vary,
            ["accept-language"]
        );
    }
}
