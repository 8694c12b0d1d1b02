//! The cache's logic, kept apart from I/O so it can be tested without a network:
//! which key a request maps to ([`key`]), how a response is stored ([`entry`]),
//! what may be stored ([`policy`]), and how concurrent misses share one origin
//! request ([`coalesce`]).

pub mod breaker;
pub mod coalesce;
pub mod directives;
pub mod encoding;
pub mod entry;
pub mod freshness;
pub mod key;
pub mod policy;
pub mod revalidate;
pub mod status;
pub mod vary;
