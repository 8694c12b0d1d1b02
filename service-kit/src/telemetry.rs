//! Logs and per-request telemetry.
//!
//! Logs go to stdout through `tracing`: JSON lines by default (`LOG_FORMAT=json`),
//! human-readable with `LOG_FORMAT=pretty`; `RUST_LOG` filters them. Lines are
//! handed to a background writer thread, so logging never blocks a worker; if
//! stdout cannot keep up, lines are dropped and counted
//! (`log_lines_dropped_total`) rather than queued without bound.
//!
//! [`RequestTelemetry::track`] (and [`track_requests`], the same as an axum
//! middleware) is the one place every request goes through: it gives the
//! request its id, holds it to the [`RequestLimits`], records its metrics and
//! writes its access line, so all of them agree. It is on every request's
//! path, so it registers each series once and writes the JSON access line
//! itself (see `access`).

mod access;
mod span_fields;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use metrics::{Counter, Gauge, Histogram};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::{Metrics, request_id};

/// Route label of requests no route matched (404s): keeps label cardinality bounded.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Hand-overs waiting for the writer thread at most; past that they are dropped.
const QUEUED_WRITES: usize = 16_384;

/// The writer of JSON lines, once installed.
static JSON_WRITER: OnceLock<writer::LineWriter> = OnceLock::new();

/// Writes what is queued when dropped: keep it alive until the process ends.
#[derive(Debug)]
#[must_use = "logs are lost unless the guard lives until the end of main"]
pub struct LogGuard {
    _writer: Option<writer::WriterThread>,
}

/// Installs the global log subscriber. Later calls (several apps in one test
/// process) keep the first one.
pub fn init_tracing(format: &str) -> LogGuard {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,reqwest=warn"));
    let Ok((writer, guard)) = writer::spawn(std::io::stdout(), QUEUED_WRITES) else {
        eprintln!("cannot start the log writer thread; logging to nothing");
        return LogGuard { _writer: None };
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let installed = if format == "json" {
        // The request's span (its request id) rides along on every line it logs.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(span_fields::JsonSpanFields)
            .try_init()
    } else {
        builder.try_init()
    };
    if installed.is_err() {
        return LogGuard { _writer: None };
    }
    if format == "json" {
        let _first = JSON_WRITER.set(writer);
    }
    LogGuard {
        _writer: Some(guard),
    }
}

/// Hands the access lines this thread has gathered to the log writer. The
/// runtime calls it whenever a worker runs out of work (see `lifecycle::run`).
pub fn flush_thread_logs() {
    if let Some(writer) = JSON_WRITER.get() {
        access::flush(writer);
    }
}

/// Writes of log lines dropped because stdout did not keep up (a write of
/// access lines may hold several).
pub(crate) fn dropped_log_lines() -> u64 {
    JSON_WRITER.get().map_or(0, writer::LineWriter::dropped)
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

/// What every request is held to, before and while it is handled.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// The longest a handler may take to produce the response head: 503.
    pub timeout: Duration,
    /// The longest path and query: 414.
    pub max_uri_bytes: usize,
    /// The most bytes of header names and values: 431.
    pub max_header_bytes: usize,
}

impl RequestLimits {
    /// The problem for a request over a size limit, if it is.
    fn refuse(&self, request: &Request) -> Option<Response> {
        let uri = request
            .uri()
            .path_and_query()
            .map_or(0, |p| p.as_str().len());
        if uri > self.max_uri_bytes {
            let detail = format!(
                "The request target is {uri} bytes long; at most {} are accepted.",
                self.max_uri_bytes
            );
            return Some(refusal(
                StatusCode::URI_TOO_LONG,
                "uri-too-long",
                "URI too long",
                detail,
            ));
        }
        let headers: usize = request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len())
            .sum();
        if headers > self.max_header_bytes {
            let detail = format!(
                "The request's headers take {headers} bytes; at most {} are accepted.",
                self.max_header_bytes
            );
            return Some(refusal(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "Request header fields too large",
                detail,
            ));
        }
        None
    }

    /// The problem for a handler that took too long.
    fn timed_out(&self) -> Response {
        let detail = format!(
            "The request could not be answered within {} s; retry shortly.",
            self.timeout.as_secs()
        );
        let mut response = refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "request-timeout",
            "Request timed out",
            detail,
        );
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

fn refusal(status: StatusCode, slug: &str, title: &str, detail: String) -> Response {
    crate::Problem::typed(status, slug, title)
        .with_detail(detail)
        .into_response()
}

/// The request series of one app, registered on first use and then reused:
/// recording a request looks its handles up without building a label.
/// Cheap to clone.
#[derive(Clone)]
pub struct RequestTelemetry(Arc<Registered>);

struct Registered {
    registry: Metrics,
    limits: RequestLimits,
    routes: RwLock<HashMap<String, Arc<RouteSeries>>>,
}

/// The series of one matched route.
struct RouteSeries {
    route: String,
    in_flight: Gauge,
    answered: RwLock<HashMap<MethodStatus, Answered>>,
}

/// A method label and a status code.
type MethodStatus = (&'static str, u16);

/// The count and the latency of the requests answered with one status.
type Answered = (Counter, Histogram);

impl std::fmt::Debug for RequestTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTelemetry").finish_non_exhaustive()
    }
}

impl RequestTelemetry {
    pub fn new(registry: &Metrics, limits: RequestLimits) -> Self {
        describe_http_metrics(registry);
        Self(Arc::new(Registered {
            registry: registry.clone(),
            limits,
            routes: RwLock::default(),
        }))
    }

    fn route(&self, route: &str) -> Arc<RouteSeries> {
        if let Some(series) = read(&self.0.routes).get(route) {
            return series.clone();
        }
        let series = Arc::new(RouteSeries {
            route: route.to_owned(),
            in_flight: self
                .0
                .registry
                .scope(|| metrics::gauge!("http_requests_in_flight", "route" => route.to_owned())),
            answered: RwLock::default(),
        });
        write(&self.0.routes)
            .entry(route.to_owned())
            .or_insert(series)
            .clone()
    }

    fn answered(&self, route: &RouteSeries, method: &'static str, status: u16, seconds: f64) {
        if let Some((count, time)) = read(&route.answered).get(&(method, status)) {
            count.increment(1);
            time.record(seconds);
            return;
        }
        let (count, time) = self.0.registry.scope(|| {
            let labels = [
                ("route", route.route.clone()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ];
            (
                metrics::counter!("http_requests_total", &labels),
                metrics::histogram!("http_request_duration_seconds", &labels),
            )
        });
        count.increment(1);
        time.record(seconds);
        write(&route.answered).insert((method, status), (count, time));
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight(Gauge);

impl InFlight {
    fn enter(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Middleware for axum routers: [`RequestTelemetry::track`] with the matched
/// route as the label.
pub async fn track_requests(
    State(telemetry): State<RequestTelemetry>,
    request: Request,
    next: Next,
) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let route = matched
        .as_ref()
        .map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
    telemetry
        .track(route, request, |request| next.run(request))
        .await
}

impl RequestTelemetry {
    /// Runs `handle` for the request with the request id (kept or made,
    /// passed on, returned), the [`RequestLimits`], request count, latency
    /// and in-flight metrics labelled by `route`, and one access log line.
    /// Everything the request logs carries its id.
    pub async fn track<F, Fut>(&self, route: &str, mut request: Request, handle: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let start = Instant::now();
        let id = request_id::ensure(request.headers_mut());
        let route = self.route(route);
        let method = method_label(request.method());
        let uri = request.uri().clone();

        let in_flight = InFlight::enter(route.in_flight.clone());
        let limits = self.0.limits;
        let mut response = match limits.refuse(&request) {
            Some(refused) => refused,
            None => {
                let span = tracing::info_span!("request", request_id = id.to_str().unwrap_or("-"));
                let deadline = tokio::time::Instant::from_std(start) + limits.timeout;
                let handled = Before {
                    handled: handle(request).instrument(span),
                    deadline,
                    timer: None,
                };
                let handled = handled.await;
                handled.unwrap_or_else(|| limits.timed_out())
            }
        };
        drop(in_flight);

        let elapsed = start.elapsed();
        let status = response.status().as_u16();
        self.answered(&route, method, status, elapsed.as_secs_f64());
        let record = access::Record {
            method,
            route: &route.route,
            path: uri.path(),
            status,
            latency: elapsed,
            cache: response
                .headers()
                .get(X_CACHE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-"),
            request_id: id.to_str().unwrap_or("-"),
        };
        access::log(&record, JSON_WRITER.get());
        response.headers_mut().insert(request_id::HEADER, id);
        response
    }
}

pin_project_lite::pin_project! {
    /// What `handled` gives, unless `deadline` passes first. Most answers
    /// (cache hits) are ready at the first poll, and then no timer is armed
    /// at all.
    struct Before<F> {
        #[pin]
        handled: F,
        deadline: tokio::time::Instant,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: Future> Future for Before<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.handled.poll(cx) {
            return Poll::Ready(Some(output));
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx).map(|()| None)
    }
}

/// The cache outcome header api-cache sets, logged with each request.
const X_CACHE: http::HeaderName = http::HeaderName::from_static("x-cache");
