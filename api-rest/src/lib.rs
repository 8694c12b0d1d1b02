//! api-rest: air-quality measurements from PostgreSQL as a streamed JSON array.
//!
//! - [`config`]: environment variables.
//! - [`query`]: the `/air_quality` parameters and their validation.
//! - [`store`]: the connection pool and the SQL.
//! - [`measurement`]: a row and its JSON form.
//! - [`routes`]: HTTP handlers; [`error`]: how failures become problem+json.
//! - [`startup`]: wiring it together on a listener.

pub mod changes;
pub mod config;
pub mod error;
pub mod measurement;
pub mod query;
pub mod routes;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::Application;
