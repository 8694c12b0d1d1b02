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

pub(crate) use self::fill::Flights;
use crate::cache::target::Target;
use crate::routes::AppState;

/// Answers a request for any path but the service's own, from `peer`. The
/// target is normalized first, once: what is keyed is what is forwarded.
pub(crate) async fn proxy(state: AppState, peer: IpAddr, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = match Target::parse(parts.uri.path(), parts.uri.query()) {
        Ok(target) => target,
        Err(error) => return respond::invalid_target(&state, &error),
    };
    if parts.method == Method::GET || parts.method == Method::HEAD {
        read::serve(&state, request::ReadRequest::new(parts, target, peer)).await
    } else {
        Box::pin(write::forward(&state, parts, target, body, peer)).await
    }
}

#[cfg(test)]
mod tests;
