//! What api-rest and api-cache share, so each service only holds its own logic:
//! configuration from the environment, `application/problem+json` errors, logs and
//! Prometheus metrics, the lifecycle (readiness, graceful shutdown) and the
//! `healthcheck` subcommand used by container health checks.

pub mod conditional;
pub mod config;
pub mod healthcheck;
pub mod lifecycle;
pub mod metrics;
pub mod problem;
pub mod request_id;
pub mod server;
pub mod telemetry;

pub use config::{ConfigError, RuntimeConfig};
pub use lifecycle::Lifecycle;
pub use metrics::Metrics;
pub use problem::Problem;
