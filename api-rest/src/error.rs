//! api-rest's failures and the responses they become.
//!
//! Clients get an `application/problem+json` body; database details stay in the
//! log. A database that cannot be reached is a 503 (retry later), any other
//! database error an opaque 500.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use service_kit::Problem;

use crate::params::InvalidParam;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid query parameters")]
    InvalidParameters(Vec<InvalidParam>),
    /// Station ids a request names that no station has.
    #[error("unknown stations")]
    UnknownStations(Vec<String>),
    /// `Accept` allows none of the media types the endpoint answers in.
    #[error("not acceptable")]
    NotAcceptable(Vec<&'static str>),
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    #[error("the database query failed")]
    Database(#[source] sqlx::Error),
    /// Something that should not happen: logged, answered as an opaque 500.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            Self::DatabaseUnavailable(error)
        } else {
            Self::Database(error)
        }
    }
}

/// Whether the error means "the database cannot serve now" rather than "this query is wrong".
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception, 53: insufficient resources (too many
            // connections), 57: operator intervention (shutdown, statement timeout),
            // 28: the server refused our credentials.
            ["08", "53", "57", "28"]
                .iter()
                .any(|class| code.starts_with(class))
        }),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::InvalidParameters(params) => {
                let detail = params
                    .iter()
                    .map(|p| format!("{}='{}': {}", p.name, p.value, p.reason))
                    .collect::<Vec<_>>()
                    .join("; ");
                Problem::typed(
                    StatusCode::BAD_REQUEST,
                    "invalid-parameter",
                    "Invalid query parameter",
                )
                .with_detail(detail)
                .with_extension("invalid_params", params)
                .into_response()
            }
            Self::UnknownStations(ids) => {
                Problem::typed(StatusCode::NOT_FOUND, "unknown-station", "Unknown station")
                    .with_detail(format!(
                        "No station {}; GET /stations lists them.",
                        ids.join(", ")
                    ))
                    .with_extension("unknown_stations", ids)
                    .into_response()
            }
            Self::NotAcceptable(offered) => Problem::typed(
                StatusCode::NOT_ACCEPTABLE,
                "not-acceptable",
                "Not acceptable",
            )
            .with_detail(format!(
                "This endpoint answers in {}; ask for one in Accept or with the format parameter.",
                offered.join(", ")
            ))
            .with_extension("available", offered)
            .into_response(),
            Self::DatabaseUnavailable(error) => {
                tracing::warn!(error = %error, "database unavailable");
                let mut response = Problem::typed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database-unavailable",
                    "Database unavailable",
                )
                .with_detail(
                    "The measurements database cannot be reached right now; retry shortly.",
                )
                .into_response();
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("5"),
                );
                response
            }
            Self::Database(error) => {
                tracing::error!(error = %error, "database query failed");
                internal()
            }
            Self::Internal(error) => {
                tracing::error!(%error, "internal error");
                internal()
            }
        }
    }
}

fn internal() -> Response {
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
        .with_detail("The request could not be completed.")
        .into_response()
}
