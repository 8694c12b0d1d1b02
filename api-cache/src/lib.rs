//! api-cache: the public front. GETs are answered from the in-process tier or
//! Redis when a fresh copy exists, otherwise fetched from api-rest once,
//! stored and returned.
//!
//! - `cache`: the logic without I/O: keys, the plan for a request, freshness,
//!   the storage policy, the stored and the servable forms, single-flight.
//! - `storage`: the in-process tier, the shared store (Redis) behind a trait,
//!   the fill lock, the replicas' events.
//! - `proxy`: the read path (look up, decide, act) and other methods;
//!   `origin`: api-rest through reqwest; `changes`: its data-change feed.
//! - `routes`: the router, the shared state and the service's own endpoints.
//! - [`config`], `error`, `headers`, `metrics`, [`startup`].

mod cache;
mod changes;
pub mod config;
mod cpu;
mod error;
mod headers;
mod metrics;
mod origin;
mod proxy;
mod routes;
pub mod startup;
mod storage;
#[cfg(test)]
mod test_support;

pub use config::Config;
pub use startup::Application;

/// The Redis key of the entry for `path_and_query` under `prefix`, as every
/// replica computes it (for operators and tests that look into Redis);
/// `None` for a target api-cache refuses.
pub fn redis_key(prefix: &str, path_and_query: &str) -> Option<String> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    };
    let target = cache::target::Target::parse(path, query).ok()?;
    let url = cache::key::UrlKey::of(&target);
    Some(format!("{prefix}:{}", cache::key::EntryKey::url(url)))
}
