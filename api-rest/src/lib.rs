//! api-rest: air-quality measurements from PostgreSQL, streamed as JSON, CSV, NDJSON or GeoJSON.
//!
//! - [`config`]: environment variables.
//! - [`params`]: strict query strings; [`query`]: the `/air_quality` parameters.
//! - [`store`]: the connection pool and the SQL.
//! - [`measurement`]: a row and its JSON form; [`encode`]: JSON, CSV, NDJSON
//!   and GeoJSON answers, streamed.
//! - [`routes`]: HTTP handlers; [`error`]: how failures become problem+json.
//! - [`startup`]: wiring it together on a listener.

pub mod aggregate;
pub mod aqi;
pub mod changes;
pub mod config;
pub mod encode;
pub mod error;
pub mod latest;
pub mod measurement;
pub mod page;
pub mod params;
pub mod query;
pub mod routes;
pub mod startup;
pub mod stations;
pub mod store;

pub use config::Config;
pub use startup::Application;
