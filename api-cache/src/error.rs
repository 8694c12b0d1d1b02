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
