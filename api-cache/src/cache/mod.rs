//! The cache's logic, kept apart from I/O so it can be tested without a network
//! or a clock: the request's normal form ([`target`]) and key ([`key`]), what to do with it
//! ([`plan`]), what may be stored and for how long ([`policy`], [`freshness`]),
//! how a response is kept ([`stored`]) and served ([`entry`]), and how
//! concurrent misses share one origin request ([`coalesce`]).

pub(crate) mod breaker;
pub(crate) mod coalesce;
pub(crate) mod directives;
pub(crate) mod encoding;
pub(crate) mod entry;
pub(crate) mod freshness;
pub(crate) mod key;
pub(crate) mod plan;
pub(crate) mod policy;
pub(crate) mod revalidate;
pub(crate) mod status;
pub(crate) mod stored;
pub(crate) mod target;
pub(crate) mod vary;
