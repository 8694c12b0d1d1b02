//! What the cache does with a GET or HEAD, decided without I/O or a clock.
//!
//! [`decide`] takes what the lookup found (an entry, or nothing and why), the
//! request's directives and what is known now (the time, the origin's data
//! version, whether a fill for the entry is under way) and returns a [`Plan`].
//! `proxy::read` carries the plan out; each variant has one action there.
//! When the origin then fails, [`stale_if_error`] says whether the stored entry
//! may answer instead. See `docs/read-path.md` for the states as a diagram.

use std::time::{Duration, SystemTime};

use super::entry::Entry;
use super::freshness::{Reuse, reuse, stale_if_error_window, stale_while_revalidate_window};
use super::policy::RequestFacts;
use super::status::Forward;

/// What the lookup found for the request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Holding<'a> {
    Entry(&'a Entry),
    /// Nothing for this request: `uri-miss`, `vary-miss`, or `miss` when the
    /// shared store could not be asked.
    Nothing(Forward),
}

/// What is known when deciding.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) time: SystemTime,
    /// The origin's data version last announced; older entries are outdated.
    pub(crate) generation: u64,
    /// A fill of this entry is under way in this process.
    pub(crate) fill_in_progress: bool,
    /// `CACHE_STALE_WHILE_REVALIDATE_SECONDS`, unless the entry says otherwise.
    pub(crate) stale_while_revalidate: Duration,
}

/// The plan for one request. `ttl` is the freshness left in whole seconds,
/// negative when served stale (the `ttl` of `Cache-Status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Answer from the fresh entry.
    Serve { ttl: i64 },
    /// Answer from the stale entry: the client's `max-stale` allows it.
    ServeStale { ttl: i64 },
    /// Answer from the stale entry now and refresh it in the background
    /// (stale-while-revalidate).
    ServeStaleAndRefresh { ttl: i64 },
    /// Ask the origin whether the entry still holds, once for all concurrent
    /// requests; a 304 refreshes it, anything else replaces it.
    Revalidate { forward: Forward },
    /// Fetch from the origin once for all concurrent requests, and store.
    Fill { forward: Forward },
    /// Another request of this process is filling the entry: wait for its answer.
    WaitForFill { forward: Forward },
    /// Go to the origin for this request alone.
    Pass { forward: Forward, storing: Storing },
    /// `only-if-cached`, and nothing stored may answer: 504.
    OnlyIfCachedMiss { forward: Forward },
}

impl Plan {
    /// Why the request goes to the origin, for plans that send it there.
    pub(crate) fn forward(self) -> Option<Forward> {
        match self {
            Self::Serve { .. } | Self::ServeStale { .. } | Self::ServeStaleAndRefresh { .. } => {
                None
            }
            Self::Revalidate { forward }
            | Self::Fill { forward }
            | Self::WaitForFill { forward }
            | Self::Pass { forward, .. }
            | Self::OnlyIfCachedMiss { forward } => Some(forward),
        }
    }
}

/// Whether an answer fetched for a request may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storing {
    /// If the storage policy allows it (a credentialed request's answer
    /// is, when it says `public`).
    IfAllowed,
    /// Never: the request said `no-store`, or another request is storing it.
    Never,
}

/// Decides what to do with a request (RFC 9111 section 4, RFC 5861).
pub(crate) fn decide(request: &RequestFacts, holding: Holding<'_>, now: &Now) -> Plan {
    if request.cache_control.no_store {
        return Plan::Pass {
            forward: Forward::Request,
            storing: Storing::Never,
        };
    }
    let entry = match holding {
        Holding::Entry(entry) if request.credentials && !entry.stored().shared_with_credentials => {
            // Never answer a credentialed request with what another client fetched.
            return Plan::Pass {
                forward: Forward::Bypass,
                storing: Storing::IfAllowed,
            };
        }
        Holding::Entry(entry) => entry,
        Holding::Nothing(forward) if request.cache_control.only_if_cached => {
            return Plan::OnlyIfCachedMiss { forward };
        }
        // A fetch made with someone's credentials is never shared.
        Holding::Nothing(forward) if request.credentials => {
            return Plan::Pass {
                forward,
                storing: Storing::IfAllowed,
            };
        }
        Holding::Nothing(forward) => return fill_or_wait(Plan::Fill { forward }, now),
    };
    match assess(entry, request, now) {
        Plan::Revalidate { forward } if request.cache_control.only_if_cached => {
            Plan::OnlyIfCachedMiss { forward }
        }
        plan @ Plan::Revalidate { .. } => fill_or_wait(plan, now),
        plan => plan,
    }
}

/// A fill, unless one is under way: then waiting for it.
fn fill_or_wait(plan: Plan, now: &Now) -> Plan {
    match plan {
        Plan::Fill { forward } | Plan::Revalidate { forward } if now.fill_in_progress => {
            Plan::WaitForFill { forward }
        }
        plan => plan,
    }
}

/// What a stored entry may be used for: serve, serve stale and refresh, or revalidate.
fn assess(entry: &Entry, request: &RequestFacts, now: &Now) -> Plan {
    if entry.stored().generation < now.generation {
        // The origin's data changed since this was fetched.
        return Plan::Revalidate {
            forward: Forward::Stale,
        };
    }
    let age = entry.age(now.time);
    let lifetime = entry.lifetime();
    let stored = entry.cache_control();
    match reuse(lifetime, age, stored, &request.cache_control) {
        Reuse::Fresh { remaining } => Plan::Serve {
            ttl: whole_seconds(remaining),
        },
        Reuse::Stale { by } => Plan::ServeStale {
            ttl: -whole_seconds(by),
        },
        // Still fresh, but the request or the entry insists on asking.
        Reuse::Revalidate if lifetime > age => Plan::Revalidate {
            forward: Forward::Request,
        },
        Reuse::Revalidate => {
            let by = age - lifetime;
            let window = stale_while_revalidate_window(stored, now.stale_while_revalidate);
            // A zero window is off, even for an entry stale by zero.
            if !insists(request) && !window.is_zero() && by <= window {
                Plan::ServeStaleAndRefresh {
                    ttl: -whole_seconds(by),
                }
            } else {
                Plan::Revalidate {
                    forward: Forward::Stale,
                }
            }
        }
    }
}

/// Whether the request itself asks to skip stored copies.
fn insists(request: &RequestFacts) -> bool {
    let cc = &request.cache_control;
    cc.no_cache || cc.max_age.is_some() || cc.min_fresh.is_some()
}

/// When the origin failed (or answered 5xx): the `ttl` (negative) at which the
/// stored entry may answer instead, if its stale-if-error window (the origin's
/// directive, else the grace period) still covers it.
pub(crate) fn stale_if_error(entry: &Entry, now: SystemTime, grace: Duration) -> Option<i64> {
    let window = stale_if_error_window(entry.cache_control(), grace)?;
    let stale_by = entry.age(now).saturating_sub(entry.lifetime());
    (stale_by <= window).then(|| -whole_seconds(stale_by))
}

/// The freshness an entry has left, in whole seconds (`Cache-Status: ttl=`).
pub(crate) fn remaining_ttl(entry: &Entry, now: SystemTime) -> i64 {
    whole_seconds(entry.lifetime().saturating_sub(entry.age(now)))
}

fn whole_seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::directives::CacheControl;
    use crate::cache::encoding::Encoding;
    use crate::cache::freshness::Timing;
    use crate::cache::stored::StoredResponse;
    use bytes::Bytes;
    use std::time::UNIX_EPOCH;

    const STORED_AT: u64 = 1_700_000_000;

    /// An entry fetched at STORED_AT, fresh for `lifetime` seconds, with these
    /// response directives.
    fn entry(lifetime: u64, cache_control: &str) -> Entry {
        let at = UNIX_EPOCH + Duration::from_secs(STORED_AT);
        let mut headers = vec![("etag".to_owned(), "\"v1\"".to_owned())];
        if !cache_control.is_empty() {
            headers.push(("cache-control".to_owned(), cache_control.to_owned()));
        }
        let stored = StoredResponse {
            status: 200,
            headers,
            body: Bytes::from_static(b"[]"),
            encoding: Encoding::Identity,
            identity_length: 2,
            timing: Timing {
                request_time: at,
                response_time: at,
                date: None,
                age_value: 0,
            },
            lifetime_ms: lifetime * 1000,
            vary: vec![],
            shared_with_credentials: cache_control.contains("public"),
            generation: 5,
        };
        Entry::decode(stored).unwrap()
    }

    fn request(cache_control: &str) -> RequestFacts {
        RequestFacts {
            cache_control: CacheControl::parse(cache_control),
            credentials: false,
        }
    }

    fn credentialed() -> RequestFacts {
        RequestFacts {
            credentials: true,
            ..request("")
        }
    }

    /// `seconds` after the entry was stored, data version 5, no fill under way.
    fn at(seconds: u64) -> Now {
        Now {
            time: UNIX_EPOCH + Duration::from_secs(STORED_AT + seconds),
            generation: 5,
            fill_in_progress: false,
            stale_while_revalidate: Duration::ZERO,
        }
    }

    fn filling(now: Now) -> Now {
        Now {
            fill_in_progress: true,
            ..now
        }
    }

    const URI_MISS: Holding<'static> = Holding::Nothing(Forward::UriMiss);

    #[test]
    fn a_fresh_entry_is_served_with_its_freshness_left() {
        let entry = entry(30, "");
        assert_eq!(
            decide(&request(""), Holding::Entry(&entry), &at(10)),
            Plan::Serve { ttl: 20 }
        );
        assert_eq!(
            decide(&request("max-age=15"), Holding::Entry(&entry), &at(10)),
            Plan::Serve { ttl: 20 },
            "young enough for the client"
        );
    }

    #[test]
    fn a_stale_entry_is_served_within_the_clients_max_stale() {
        let entry = entry(30, "");
        assert_eq!(
            decide(&request("max-stale=20"), Holding::Entry(&entry), &at(40)),
            Plan::ServeStale { ttl: -10 }
        );
        assert_eq!(
            decide(&request("max-stale=5"), Holding::Entry(&entry), &at(40)),
            Plan::Revalidate {
                forward: Forward::Stale
            }
        );
    }

    #[test]
    fn a_stale_entry_within_stale_while_revalidate_is_served_and_refreshed() {
        let entry = entry(30, "max-age=30, stale-while-revalidate=60");
        assert_eq!(
            decide(&request(""), Holding::Entry(&entry), &at(50)),
            Plan::ServeStaleAndRefresh { ttl: -20 }
        );
        assert_eq!(
            decide(&request(""), Holding::Entry(&entry), &at(100)),
            Plan::Revalidate {
                forward: Forward::Stale
            },
            "past the window"
        );
        assert_eq!(
            decide(&request("no-cache"), Holding::Entry(&entry), &at(50)),
            Plan::Revalidate {
                forward: Forward::Stale
            },
            "the client insists"
        );
        let configured = Now {
            stale_while_revalidate: Duration::from_secs(60),
            ..at(50)
        };
        assert_eq!(
            decide(
                &request(""),
                Holding::Entry(&super::tests::entry(30, "")),
                &configured
            ),
            Plan::ServeStaleAndRefresh { ttl: -20 },
            "CACHE_STALE_WHILE_REVALIDATE_SECONDS when the entry says nothing"
        );
    }

    #[test]
    fn a_stale_entry_or_one_the_client_will_not_take_is_revalidated() {
        let entry = entry(30, "");
        assert_eq!(
            decide(&request(""), Holding::Entry(&entry), &at(30)),
            Plan::Revalidate {
                forward: Forward::Stale
            },
            "stale at age == lifetime"
        );
        for insisting in ["no-cache", "max-age=0", "min-fresh=25"] {
            assert_eq!(
                decide(&request(insisting), Holding::Entry(&entry), &at(10)),
                Plan::Revalidate {
                    forward: Forward::Request
                },
                "{insisting}"
            );
        }
        let no_cache = super::tests::entry(30, "no-cache");
        assert_eq!(
            decide(&request(""), Holding::Entry(&no_cache), &at(1)),
            Plan::Revalidate {
                forward: Forward::Request
            }
        );
    }

    #[test]
    fn an_entry_older_than_the_data_is_revalidated_whatever_its_freshness() {
        let entry = entry(3600, "");
        let changed = Now {
            generation: 6,
            ..at(1)
        };
        assert_eq!(
            decide(&request(""), Holding::Entry(&entry), &changed),
            Plan::Revalidate {
                forward: Forward::Stale
            }
        );
    }

    #[test]
    fn nothing_stored_means_one_fill_and_the_others_wait_for_it() {
        assert_eq!(
            decide(&request(""), URI_MISS, &at(0)),
            Plan::Fill {
                forward: Forward::UriMiss
            }
        );
        assert_eq!(
            decide(
                &request(""),
                Holding::Nothing(Forward::VaryMiss),
                &filling(at(0))
            ),
            Plan::WaitForFill {
                forward: Forward::VaryMiss
            }
        );
        let entry = entry(30, "");
        assert_eq!(
            decide(&request(""), Holding::Entry(&entry), &filling(at(40))),
            Plan::WaitForFill {
                forward: Forward::Stale
            },
            "a revalidation under way is waited for too"
        );
        assert_eq!(
            decide(&request(""), Holding::Entry(&entry), &filling(at(1))),
            Plan::Serve { ttl: 29 },
            "a fresh entry never waits"
        );
    }

    #[test]
    fn a_request_that_says_no_store_passes_and_stores_nothing() {
        let entry = entry(30, "");
        for holding in [Holding::Entry(&entry), URI_MISS] {
            assert_eq!(
                decide(&request("no-store"), holding, &filling(at(1))),
                Plan::Pass {
                    forward: Forward::Request,
                    storing: Storing::Never
                }
            );
        }
    }

    #[test]
    fn credentialed_requests_get_only_what_was_declared_shareable() {
        let private = entry(30, "");
        assert_eq!(
            decide(&credentialed(), Holding::Entry(&private), &at(1)),
            Plan::Pass {
                forward: Forward::Bypass,
                storing: Storing::IfAllowed
            }
        );
        assert_eq!(
            decide(&credentialed(), URI_MISS, &filling(at(1))),
            Plan::Pass {
                forward: Forward::UriMiss,
                storing: Storing::IfAllowed
            },
            "never joins someone else's fill"
        );
        let public = entry(30, "public, max-age=30");
        assert_eq!(
            decide(&credentialed(), Holding::Entry(&public), &at(1)),
            Plan::Serve { ttl: 29 }
        );
    }

    #[test]
    fn only_if_cached_answers_from_the_cache_or_not_at_all() {
        let entry = entry(30, "");
        assert_eq!(
            decide(&request("only-if-cached"), URI_MISS, &at(0)),
            Plan::OnlyIfCachedMiss {
                forward: Forward::UriMiss
            }
        );
        assert_eq!(
            decide(&request("only-if-cached"), Holding::Entry(&entry), &at(40)),
            Plan::OnlyIfCachedMiss {
                forward: Forward::Stale
            },
            "a stale entry is not for it"
        );
        assert_eq!(
            decide(&request("only-if-cached"), Holding::Entry(&entry), &at(10)),
            Plan::Serve { ttl: 20 }
        );
        assert_eq!(
            decide(
                &request("only-if-cached, max-stale"),
                Holding::Entry(&entry),
                &at(400)
            ),
            Plan::ServeStale { ttl: -370 }
        );
    }

    #[test]
    fn stale_if_error_covers_the_grace_period_unless_the_origin_forbids_it() {
        let grace = Duration::from_secs(300);
        let now = |s: u64| UNIX_EPOCH + Duration::from_secs(STORED_AT + s);
        let lenient = entry(30, "");
        assert_eq!(stale_if_error(&lenient, now(100), grace), Some(-70));
        assert_eq!(stale_if_error(&lenient, now(331), grace), None);
        let strict = entry(30, "max-age=30, must-revalidate");
        assert_eq!(stale_if_error(&strict, now(31), grace), None);
        let explicit = entry(30, "max-age=30, stale-if-error=10");
        assert_eq!(stale_if_error(&explicit, now(35), grace), Some(-5));
        assert_eq!(stale_if_error(&explicit, now(41), grace), None);
        assert_eq!(remaining_ttl(&lenient, now(12)), 18);
        assert_eq!(remaining_ttl(&lenient, now(99)), 0);
    }
}
