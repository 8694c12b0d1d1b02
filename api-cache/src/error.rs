//! api-cache's failures and the responses they become.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use service_kit::Problem;

use crate::origin::OriginError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error(transparent)]
    Origin(#[from] OriginError),
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        match self {
            Self::Origin(OriginError::Overloaded) => {
                tracing::warn!("too many requests to the origin under way; refusing one");
                let mut response = Problem::typed(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "origin-busy",
                    "Origin busy",
                )
                .with_detail("Too many requests are waiting for api-rest; retry shortly.")
                .into_response();
                response.headers_mut().insert(
                    http::header::RETRY_AFTER,
                    http::HeaderValue::from_static("1"),
                );
                response
            }
            Self::Origin(OriginError::Timeout(limit)) => {
                tracing::warn!(?limit, "origin timed out");
                Problem::typed(
                    StatusCode::GATEWAY_TIMEOUT,
                    "origin-timeout",
                    "Origin timeout",
                )
                .with_detail("api-rest did not answer in time.")
                .into_response()
            }
            Self::Origin(error) => {
                tracing::warn!(%error, "origin failed");
                Problem::typed(
                    StatusCode::BAD_GATEWAY,
                    "origin-unavailable",
                    "Origin unavailable",
                )
                .with_detail("api-rest cannot be reached right now; retry shortly.")
                .into_response()
            }
        }
    }
}
