//! Methods other than GET and HEAD: forwarded to the origin as they are, at
//! their normalized target (body streamed both ways). After a 2xx or 3xx answer, what is stored for the URL
//! is invalidated, and for `Location` / `Content-Location` when they point at
//! this same origin (RFC 9111 section 4.4).

use std::net::IpAddr;

use axum::body::Body;
use axum::response::Response;
use http::request::Parts;
use http::{HeaderMap, Uri, header};

use super::respond;
use crate::cache::key::UrlKey;
use crate::cache::status::{CacheStatus, Forward, Outcome};
use crate::cache::target::Target;
use crate::headers::{Forwarding, to_origin};
use crate::origin::OriginError;
use crate::routes::AppState;

pub(super) async fn forward(
    state: &AppState,
    parts: Parts,
    target: Target,
    body: Body,
    peer: IpAddr,
) -> Response {
    let (uri, headers) = (&parts.uri, &parts.headers);
    let path_and_query = target.as_str();
    let forwarded = to_origin(headers, Some(peer), Forwarding::Untouched);
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let mut status = CacheStatus::forward(Forward::Method);
    let asked = std::time::Instant::now();
    let response = match state
        .origin
        .forward(parts.method.clone(), path_and_query, forwarded, body)
        .await
    {
        Ok(response) => response,
        Err(error) => {
            let label = if matches!(error, OriginError::Timeout(_)) {
                "timeout"
            } else {
                "error"
            };
            state.metrics.origin(label, asked.elapsed());
            state.metrics.outcome(Outcome::Error);
            return respond::origin_error(error, &status);
        }
    };
    state
        .metrics
        .origin(response.status().as_str(), asked.elapsed());
    status.forward_status = Some(response.status().as_u16());
    if response.status().is_success() || response.status().is_redirection() {
        let mut targets = vec![target.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(target) = response
                .headers()
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|location| same_origin_target(headers, uri, location))
            {
                targets.push(target);
            }
        }
        for target in targets {
            let url = UrlKey::of(&target);
            match state.storage.invalidate(url).await {
                Ok(removed) => tracing::debug!(
                    target = target.as_str(),
                    removed,
                    "invalidated after an unsafe method"
                ),
                Err(error) => {
                    tracing::warn!(target = target.as_str(), %error, "could not invalidate after an unsafe method");
                }
            }
        }
    }
    state.metrics.outcome(Outcome::Pass);
    respond::passed(response, &status, Outcome::Pass)
}

/// The target a `Location`/`Content-Location` names, if it is on the origin the
/// request went to (a relative reference, or an absolute URL with the same host).
fn same_origin_target(headers: &HeaderMap, uri: &Uri, location: &str) -> Option<Target> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("localhost");
    let base = url::Url::parse(&format!(
        "http://{host}{}",
        uri.path_and_query().map_or("/", |p| p.as_str())
    ))
    .ok()?;
    let resolved = base.join(location).ok()?;
    let same = resolved.host_str() == base.host_str()
        && resolved.port_or_known_default() == base.port_or_known_default();
    if !same {
        return None;
    }
    Target::parse(resolved.path(), resolved.query()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn target(location: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("api.example:8080"));
        let uri: Uri = "/air_quality?a=1".parse().unwrap();
        same_origin_target(&headers, &uri, location).map(|t| t.as_str().to_owned())
    }

    #[test]
    fn locations_on_the_same_origin_are_resolved() {
        assert_eq!(target("/air_quality/7").as_deref(), Some("/air_quality/7"));
        assert_eq!(
            target("stations?b=2&a=1").as_deref(),
            Some("/stations?a=1&b=2")
        );
        assert_eq!(target("http://api.example:8080/x").as_deref(), Some("/x"));
        assert_eq!(target("http://elsewhere.example/x"), None);
        assert_eq!(target("http://api.example:9090/x"), None);
    }
}
