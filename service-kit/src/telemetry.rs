//! Logs and per-request telemetry.
//!
//! Logs go to stdout through `tracing`: JSON lines by default (`LOG_FORMAT=json`),
//! human-readable with `LOG_FORMAT=pretty`; `RUST_LOG` filters them.
//! [`track_requests`] is the one middleware that records request metrics and
//! writes the access log line, so both always agree.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::Method;
use tracing_subscriber::EnvFilter;

use crate::Metrics;

/// Route label of requests no route matched (404s): keeps label cardinality bounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Installs the global log subscriber. Later calls (several apps in one test
/// process) keep the first one.
pub fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _already_set = if format == "json" {
        // The request's span (its request id) rides along on every line it logs.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Describes the request metrics once, so `/metrics` carries HELP lines.
pub fn describe_http_metrics(metrics: &Metrics) {
    metrics.scope(|| {
        metrics::describe_counter!(
            "http_requests_total",
            "HTTP requests answered, by matched route, method and status."
        );
        metrics::describe_histogram!(
            "http_request_duration_seconds",
            metrics::Unit::Seconds,
            "Time from request to response headers, by matched route, method and status."
        );
        metrics::describe_gauge!(
            "http_requests_in_flight",
            "HTTP requests being handled now, by matched route."
        );
    });
}

/// Bounded method label: the standard methods by name, anything else as `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight {
    metrics: Metrics,
    route: String,
}

impl InFlight {
    fn enter(metrics: &Metrics, route: &str) -> Self {
        metrics.scope(|| {
            metrics::gauge!("http_requests_in_flight", "route" => route.to_owned()).increment(1.0);
        });
        Self {
            metrics: metrics.clone(),
            route: route.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let route = std::mem::take(&mut self.route);
        self.metrics.scope(|| {
            metrics::gauge!("http_requests_in_flight", "route" => route).decrement(1.0);
        });
    }
}

/// Middleware: request count, latency and in-flight metrics labelled by matched
/// route, and one access log line per request.
pub async fn track_requests(
    State(metrics): State<Metrics>,
    request: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str)
        .to_owned();
    let method = method_label(request.method());
    let path = request.uri().path().to_owned();
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();

    let in_flight = InFlight::enter(&metrics, &route);
    let response = next.run(request).await;
    drop(in_flight);

    let elapsed = start.elapsed();
    let status = response.status().as_u16();
    metrics.scope(|| {
        let labels = [
            ("route", route.clone()),
            ("method", method.to_owned()),
            ("status", status.to_string()),
        ];
        metrics::counter!("http_requests_total", &labels).increment(1);
        metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    });
    let cache = response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info!(
        target: "access",
        method,
        route,
        path,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        cache,
        request_id,
        "request"
    );
    response
}
