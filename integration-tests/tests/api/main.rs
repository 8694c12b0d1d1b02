//! Integration tests: one binary, real PostgreSQL, Redis and HTTP.
//!
//! `TEST_LOG=1 cargo test -p integration-tests -- --nocapture` shows the services' logs.

// Helpers here unwrap like the tests they serve: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod binaries;
mod cache;
mod data;
mod deployment;
mod formats;
mod hardening;
mod http_cache;
mod init_script;
mod observability;
mod partitions;
mod read_replica;
mod repository;
mod resilience;
mod rest;
mod shared_store;
