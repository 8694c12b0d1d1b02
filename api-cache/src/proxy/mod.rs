//! Every path but the service's own. GET and HEAD are read through the cache
//! ([`read`], with trips to the origin in [`fill`]); other methods go to the
//! origin as they are, and a successful one invalidates what is stored for
//! its URL ([`write`]). [`respond`] builds the responses.

mod fill;
mod read;
mod request;
mod respond;
mod write;

use std::net::IpAddr;

use axum::extract::Request;
use axum::response::Response;
use http::Method;

pub(crate) use self::fill::Shared;
use crate::routes::AppState;

/// Answers a request for any path but the service's own, from `peer`.
pub(crate) async fn proxy(state: AppState, peer: IpAddr, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    if parts.method == Method::GET || parts.method == Method::HEAD {
        read::serve(&state, request::ReadRequest::new(parts, peer)).await
    } else {
        Box::pin(write::forward(&state, parts, body, peer)).await
    }
}

#[cfg(test)]
mod tests;
