//! api-cache: the public front. GETs are answered from Redis when a fresh copy
//! exists, otherwise fetched from api-rest, stored and returned.
//!
//! - [`cache`]: keys, the stored format, the storage policy, single-flight (no I/O).
//! - [`storage`]: the local tier, Redis and the replicas' messages;
//!   [`origin`]: api-rest through reqwest; [`changes`]: its data-change feed.
//! - [`routes`]: the read-through handler and the service's own endpoints.
//! - [`config`], [`error`], [`headers`], [`startup`].

pub mod cache;
pub mod changes;
pub mod config;
pub mod error;
pub mod headers;
pub mod origin;
pub mod routes;
pub mod startup;
pub mod storage;
#[cfg(test)]
mod test_support;

pub use config::Config;
pub use startup::Application;
