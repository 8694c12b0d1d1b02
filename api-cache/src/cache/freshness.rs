//! Freshness (RFC 9111 section 4.2): how long a response may be reused, how old
//! it is, and whether a request may have it without asking the origin.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, header};
use serde::{Deserialize, Serialize};

use super::directives::CacheControl;

/// The clocks of one exchange with the origin, kept with the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Timing {
    /// When the request left for the origin.
    #[serde(with = "epoch_millis")]
    pub(crate) request_time: SystemTime,
    /// When the response arrived.
    #[serde(with = "epoch_millis")]
    pub(crate) response_time: SystemTime,
    /// The origin's `Date`, if it sent a valid one.
    #[serde(with = "opt_epoch_millis")]
    pub(crate) date: Option<SystemTime>,
    /// The origin's `Age` (seconds), if any.
    pub(crate) age_value: u64,
}

impl Timing {
    /// Reads `Date` and `Age` from the origin's headers.
    pub(crate) fn from_response(
        request_time: SystemTime,
        response_time: SystemTime,
        headers: &HeaderMap,
    ) -> Self {
        let date = headers
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(service_kit::conditional::parse_http_date);
        let age_value = headers
            .get(header::AGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Self {
            request_time,
            response_time,
            date,
            age_value,
        }
    }

    /// The age when received (RFC 9111 4.2.3: the larger of the apparent age and
    /// the origin's `Age` plus the round trip).
    pub(crate) fn corrected_initial_age(&self) -> Duration {
        let apparent_age = self
            .date
            .and_then(|date| self.response_time.duration_since(date).ok())
            .unwrap_or(Duration::ZERO);
        let response_delay = self
            .response_time
            .duration_since(self.request_time)
            .unwrap_or(Duration::ZERO);
        // Saturating: an origin may send `Age: 18446744073709551615`.
        let corrected_age_value =
            Duration::from_secs(self.age_value).saturating_add(response_delay);
        apparent_age.max(corrected_age_value)
    }

    /// The age now (RFC 9111 4.2.3: `corrected_initial_age + resident_time`).
    pub(crate) fn current_age(&self, now: SystemTime) -> Duration {
        let resident_time = now
            .duration_since(self.response_time)
            .unwrap_or(Duration::ZERO);
        self.corrected_initial_age().saturating_add(resident_time)
    }
}

/// Where a freshness lifetime came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifetime {
    /// `s-maxage`, `max-age` or `Expires`.
    Explicit(Duration),
    /// The origin said nothing: `CACHE_TTL_SECONDS`.
    Heuristic(Duration),
    /// Nothing, and no default applies.
    Unknown,
}

impl Lifetime {
    pub(crate) fn duration(self) -> Duration {
        match self {
            Self::Explicit(d) | Self::Heuristic(d) => d,
            Self::Unknown => Duration::ZERO,
        }
    }
}

/// Statuses a cache may keep without explicit freshness (RFC 9110 15.1).
/// 206 is left out (this cache does not combine ranges) and so is 501 (a 5xx).
pub(crate) fn heuristically_cacheable(status: u16) -> bool {
    matches!(
        status,
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414
    )
}

/// RFC 9111 4.2.1, for a shared cache: `s-maxage`, then `max-age`, then
/// `Expires - Date`; else `default` (when non-zero and the status allows it).
pub(crate) fn freshness_lifetime(
    status: u16,
    cc: &CacheControl,
    headers: &HeaderMap,
    timing: &Timing,
    default: Duration,
) -> Lifetime {
    if let Some(seconds) = cc.s_maxage.or(cc.max_age) {
        return Lifetime::Explicit(Duration::from_secs(seconds));
    }
    if let Some(expires) = headers.get(header::EXPIRES).and_then(|v| v.to_str().ok()) {
        // An invalid Expires (often "0") means already expired.
        let lifetime = service_kit::conditional::parse_http_date(expires)
            .and_then(|expires| {
                expires
                    .duration_since(timing.date.unwrap_or(timing.response_time))
                    .ok()
            })
            .unwrap_or(Duration::ZERO);
        return Lifetime::Explicit(lifetime);
    }
    if !default.is_zero() && heuristically_cacheable(status) {
        return Lifetime::Heuristic(default);
    }
    Lifetime::Unknown
}

/// What a request may do with a stored response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Serve it; `remaining` is its freshness left.
    Fresh { remaining: Duration },
    /// Serve it stale: the request's `max-stale` allows it.
    Stale { by: Duration },
    /// Ask the origin first (with validators if the entry has them).
    Revalidate,
}

/// Applies the response's and the request's directives (RFC 9111 4.2, 5.2.1).
pub(crate) fn reuse(
    lifetime: Duration,
    age: Duration,
    stored: &CacheControl,
    request: &CacheControl,
) -> Reuse {
    if stored.no_cache || request.no_cache {
        return Reuse::Revalidate;
    }
    if lifetime > age {
        let remaining = lifetime - age;
        let too_old = request
            .max_age
            .is_some_and(|max| age > Duration::from_secs(max));
        let not_fresh_enough = request
            .min_fresh
            .is_some_and(|min| remaining < Duration::from_secs(min));
        return if too_old || not_fresh_enough {
            Reuse::Revalidate
        } else {
            Reuse::Fresh { remaining }
        };
    }
    let stale_by = age - lifetime;
    match request.max_stale {
        _ if stored.must_revalidate => Reuse::Revalidate,
        Some(None) => Reuse::Stale { by: stale_by },
        Some(Some(limit)) if stale_by <= Duration::from_secs(limit) => {
            Reuse::Stale { by: stale_by }
        }
        _ => Reuse::Revalidate,
    }
}

/// How long past its freshness a stored response may be served when the origin
/// fails (RFC 5861 `stale-if-error`): the origin's own directive if it sent one,
/// else `default` (the grace period); never after `must-revalidate` or
/// `no-cache` without an explicit `stale-if-error`.
pub(crate) fn stale_if_error_window(stored: &CacheControl, default: Duration) -> Option<Duration> {
    if let Some(seconds) = stored.stale_if_error {
        return Some(Duration::from_secs(seconds));
    }
    if stored.must_revalidate || stored.no_cache {
        return None;
    }
    Some(default)
}

/// How long past its freshness a stored response may be served while it is
/// refreshed in the background (RFC 5861 `stale-while-revalidate`): the
/// origin's directive, else `default` (zero unless configured).
pub(crate) fn stale_while_revalidate_window(stored: &CacheControl, default: Duration) -> Duration {
    if stored.must_revalidate || stored.no_cache {
        return Duration::ZERO;
    }
    stored
        .stale_while_revalidate
        .map_or(default, Duration::from_secs)
}

mod epoch_millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let millis = time
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        s.serialize_u64(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(u64::deserialize(d)?))
            .ok_or_else(|| serde::de::Error::custom("a time out of range"))
    }
}

mod opt_epoch_millis {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        time: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => super::epoch_millis::serialize(time, s),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        Option::<u64>::deserialize(d)?
            .map(|ms| {
                UNIX_EPOCH
                    .checked_add(Duration::from_millis(ms))
                    .ok_or_else(|| serde::de::Error::custom("a time out of range"))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::header_map;
    use std::time::UNIX_EPOCH;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seconds)
    }

    #[test]
    fn age_follows_rfc_9111_section_4_2_3() {
        // Sent at 0, answered at 2, the origin's clock says 1 and Age 10.
        let timing = Timing {
            request_time: at(0),
            response_time: at(2),
            date: Some(at(1)),
            age_value: 10,
        };
        // apparent age 1; corrected age value 10 + 2 = 12 -> initial age 12.
        assert_eq!(timing.corrected_initial_age(), Duration::from_secs(12));
        assert_eq!(timing.current_age(at(7)), Duration::from_secs(17));
        // A Date in the future does not make the age negative.
        let skewed = Timing {
            date: Some(at(50)),
            age_value: 0,
            ..timing
        };
        assert_eq!(skewed.current_age(at(2)), Duration::from_secs(2));
        // A Date far in the past dominates.
        let old = Timing {
            date: Some(at(0) - Duration::from_secs(100)),
            age_value: 0,
            ..timing
        };
        assert_eq!(old.corrected_initial_age(), Duration::from_secs(102));
    }

    #[test]
    fn absurd_ages_and_lifetimes_saturate_instead_of_overflowing() {
        let headers = header_map(&[("age", "18446744073709551615")]);
        let timing = Timing::from_response(at(0), at(5), &headers);
        assert_eq!(timing.age_value, u64::MAX);
        assert!(timing.current_age(at(10)) >= Duration::from_secs(u64::MAX / 2));
        let lifetime = freshness_lifetime(
            200,
            &CacheControl::parse("max-age=9999999999999999999"),
            &HeaderMap::new(),
            &timing,
            Duration::ZERO,
        );
        assert_eq!(
            lifetime,
            Lifetime::Explicit(Duration::from_secs(9_999_999_999_999_999_999))
        );
        assert!(matches!(
            reuse(
                lifetime.duration(),
                timing.current_age(at(10)),
                &CacheControl::default(),
                &CacheControl::default()
            ),
            Reuse::Revalidate
        ));
    }

    #[test]
    fn s_maxage_beats_max_age_beats_expires_beats_the_default() {
        let timing = Timing {
            request_time: at(0),
            response_time: at(0),
            date: Some(at(0)),
            age_value: 0,
        };
        let default = Duration::from_secs(30);
        let expires = header_map(&[("expires", &httpdate::fmt_http_date(at(90)))]);
        let life = |cc: &str, h: &HeaderMap| {
            freshness_lifetime(200, &CacheControl::parse(cc), h, &timing, default)
        };
        assert_eq!(
            life("max-age=10, s-maxage=20", &expires),
            Lifetime::Explicit(Duration::from_secs(20))
        );
        assert_eq!(
            life("max-age=10", &expires),
            Lifetime::Explicit(Duration::from_secs(10))
        );
        assert_eq!(
            life("", &expires),
            Lifetime::Explicit(Duration::from_secs(90))
        );
        assert_eq!(
            life("", &header_map(&[("expires", "0")])),
            Lifetime::Explicit(Duration::ZERO)
        );
        assert_eq!(life("", &HeaderMap::new()), Lifetime::Heuristic(default));
        assert_eq!(
            freshness_lifetime(
                200,
                &CacheControl::default(),
                &HeaderMap::new(),
                &timing,
                Duration::ZERO
            ),
            Lifetime::Unknown,
            "CACHE_TTL_SECONDS=0: only what the origin declares"
        );
        assert_eq!(
            freshness_lifetime(
                302,
                &CacheControl::default(),
                &HeaderMap::new(),
                &timing,
                default
            ),
            Lifetime::Unknown,
            "no default for statuses that are not heuristically cacheable"
        );
    }

    #[test]
    fn stale_windows_follow_rfc_5861_and_the_grace_period() {
        let grace = Duration::from_secs(300);
        assert_eq!(
            stale_if_error_window(&CacheControl::default(), grace),
            Some(grace)
        );
        assert_eq!(
            stale_if_error_window(&CacheControl::parse("stale-if-error=60"), grace),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            stale_if_error_window(&CacheControl::parse("must-revalidate"), grace),
            None
        );
        assert_eq!(
            stale_if_error_window(
                &CacheControl::parse("must-revalidate, stale-if-error=10"),
                grace
            ),
            Some(Duration::from_secs(10)),
            "an explicit stale-if-error is the origin's permission"
        );
        assert_eq!(
            stale_while_revalidate_window(&CacheControl::default(), Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(
            stale_while_revalidate_window(
                &CacheControl::parse("stale-while-revalidate=30"),
                Duration::ZERO
            ),
            Duration::from_secs(30)
        );
        assert_eq!(
            stale_while_revalidate_window(
                &CacheControl::parse("no-cache, stale-while-revalidate=30"),
                grace
            ),
            Duration::ZERO
        );
    }

    #[test]
    fn reuse_honours_both_sides() {
        let none = CacheControl::default();
        let s = Duration::from_secs;
        assert_eq!(
            reuse(s(30), s(10), &none, &none),
            Reuse::Fresh { remaining: s(20) }
        );
        assert_eq!(
            reuse(s(30), s(30), &none, &none),
            Reuse::Revalidate,
            "stale at age == lifetime"
        );
        assert_eq!(
            reuse(s(30), s(10), &CacheControl::parse("no-cache"), &none),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(s(30), s(10), &none, &CacheControl::parse("no-cache")),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(s(30), s(10), &none, &CacheControl::parse("max-age=0")),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(s(30), s(10), &none, &CacheControl::parse("max-age=15")),
            Reuse::Fresh { remaining: s(20) }
        );
        assert_eq!(
            reuse(s(30), s(10), &none, &CacheControl::parse("min-fresh=25")),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(s(30), s(40), &none, &CacheControl::parse("max-stale=20")),
            Reuse::Stale { by: s(10) }
        );
        assert_eq!(
            reuse(s(30), s(40), &none, &CacheControl::parse("max-stale=5")),
            Reuse::Revalidate
        );
        assert_eq!(
            reuse(
                s(30),
                s(40),
                &CacheControl::parse("must-revalidate"),
                &CacheControl::parse("max-stale")
            ),
            Reuse::Revalidate
        );
    }
}
