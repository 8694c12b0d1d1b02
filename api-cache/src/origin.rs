//! The origin (api-rest), reached with reqwest.
//!
//! For the cache, a response body is read into memory up to
//! `CACHE_MAX_BODY_BYTES` so it can be stored and shared; a larger one is handed
//! back as a stream (the part already read, then the rest) and passed through.
//! Other methods are forwarded with their bodies streamed both ways.
//!
//! Two bounds keep a flood of misses from costing more than it should:
//! at most `BACKEND_MAX_CONCURRENT_REQUESTS` requests are out at once (past
//! that, [`OriginError::Overloaded`]: the caller serves a stale entry or
//! answers 503 with `Retry-After`), and bodies being read for the cache hold at
//! most `CACHE_FILL_BUFFER_BYTES` between them (past that, a body is passed
//! through as it streams, not held).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cache::target::Target;
use crate::config::Config;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum OriginError {
    #[error("the origin cannot be reached: {0}")]
    Unreachable(String),
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the origin's response broke off: {0}")]
    Broken(String),
    #[error("too many requests to the origin are under way")]
    Overloaded,
}

/// An origin response with its body either complete or still streaming.
#[derive(Debug)]
pub(crate) struct OriginResponse {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: OriginBody,
    pub(crate) request_time: SystemTime,
    pub(crate) response_time: SystemTime,
}

#[derive(Debug)]
pub(crate) enum OriginBody {
    /// The whole body, and its share of the fill buffer budget (given back
    /// when the response is dropped).
    Complete(Bytes, Budget),
    /// Not held: what was read, and the live response for the rest.
    Streaming {
        head: Bytes,
        rest: reqwest::Response,
        why: Unbuffered,
    },
}

/// Why a body is passed through rather than held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unbuffered {
    /// Larger than `CACHE_MAX_BODY_BYTES`, or endless (server-sent events).
    TooLarge,
    /// The fill buffer budget is spent by other bodies being read.
    BudgetSpent,
}

/// Bytes of the fill buffer budget held by one body, given back when dropped.
#[derive(Debug)]
pub(crate) struct Budget {
    _permits: Option<OwnedSemaphorePermit>,
}

impl OriginBody {
    /// The whole body as a stream of chunks.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Bytes, reqwest::Error>> + Send {
        match self {
            Self::Complete(bytes, _) => stream::once(async { Ok(bytes) }).left_stream(),
            Self::Streaming { head, rest, .. } => stream::once(async { Ok(head) })
                .chain(rest.bytes_stream())
                .right_stream(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Origin {
    client: reqwest::Client,
    base_url: String,
    timeout: Duration,
    max_body_bytes: usize,
    /// `BACKEND_MAX_CONCURRENT_REQUESTS`.
    requests: Arc<Semaphore>,
    /// `CACHE_FILL_BUFFER_BYTES`, in KiB.
    buffers: Arc<Semaphore>,
}

impl Origin {
    pub(crate) fn new(config: &Config) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.backend_connect_timeout())
            .read_timeout(config.backend_timeout())
            .pool_idle_timeout(Duration::from_secs(60))
            // api-rest is reached directly, never through a proxy from the environment.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let buffer_kib =
            usize::try_from(config.cache_fill_buffer_bytes / 1024).unwrap_or(usize::MAX);
        Ok(Self {
            client,
            base_url: format!("http://{}:{}", config.backend_host, config.backend_port),
            timeout: config.backend_timeout(),
            max_body_bytes: config.cache_max_body_bytes,
            requests: Arc::new(Semaphore::new(config.backend_max_concurrent_requests)),
            buffers: Arc::new(Semaphore::new(buffer_kib.min(Semaphore::MAX_PERMITS))),
        })
    }

    /// Sends a request and waits (at most the timeout) for the response
    /// headers, within the cap on concurrent requests.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::Response, OwnedSemaphorePermit), OriginError> {
        let Ok(permit) = self.requests.clone().try_acquire_owned() else {
            return Err(OriginError::Overloaded);
        };
        match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_elapsed) => Err(OriginError::Timeout(self.timeout)),
            Ok(Err(error)) if error.is_timeout() => Err(OriginError::Timeout(self.timeout)),
            Ok(Err(error)) => Err(OriginError::Unreachable(describe(&error))),
            Ok(Ok(response)) => Ok((response, permit)),
        }
    }

    /// `GET`s the target with `headers` (already prepared for the origin),
    /// reading the body for the cache.
    pub(crate) async fn get(
        &self,
        target: &Target,
        headers: HeaderMap,
    ) -> Result<OriginResponse, OriginError> {
        let request_time = SystemTime::now();
        let request = self
            .client
            .get(format!("{}{}", self.base_url, target.as_str()))
            .headers(headers);
        let (mut response, _in_flight) = self.send(request).await?;
        let response_time = SystemTime::now();
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let body = self.read_body(response, &headers).await?;
        Ok(OriginResponse {
            status,
            headers,
            body,
            request_time,
            response_time,
        })
    }

    /// The body, held if it fits the limit and the budget, else streaming.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        headers: &HeaderMap,
    ) -> Result<OriginBody, OriginError> {
        let streaming = |head, rest, why| Ok(OriginBody::Streaming { head, rest, why });
        // Endless (server-sent events) or announced too large: passed through.
        let event_stream = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let announced = response.content_length();
        if event_stream || announced.is_some_and(|length| length > self.max_body_bytes as u64) {
            return streaming(Bytes::new(), response, Unbuffered::TooLarge);
        }
        let expected = announced.map_or(0, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let mut budget = self.budget(expected);
        let mut buffer = BytesMut::with_capacity(expected);
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(error) if error.is_timeout() => return Err(OriginError::Timeout(self.timeout)),
                Err(error) => return Err(OriginError::Broken(describe(&error))),
            };
            if buffer.len() + chunk.len() > self.max_body_bytes {
                buffer.extend_from_slice(&chunk);
                return streaming(buffer.freeze(), response, Unbuffered::TooLarge);
            }
            if buffer.len() + chunk.len() > budget.bytes()
                && !budget.grow(self, buffer.len() + chunk.len())
            {
                buffer.extend_from_slice(&chunk);
                return streaming(buffer.freeze(), response, Unbuffered::BudgetSpent);
            }
            buffer.extend_from_slice(&chunk);
        }
        Ok(OriginBody::Complete(buffer.freeze(), budget.into_budget()))
    }

    /// A share of the fill buffer budget for `bytes` (empty if none is left).
    fn budget(&self, bytes: usize) -> Share {
        let mut share = Share {
            permits: None,
            kib: 0,
        };
        share.grow(self, bytes);
        share
    }

    /// Forwards any request as it is; the response body is left streaming.
    pub(crate) async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: reqwest::Body,
    ) -> Result<reqwest::Response, OriginError> {
        let request = self
            .client
            .request(method, format!("{}{path_and_query}", self.base_url))
            .headers(headers)
            .body(body);
        self.send(request)
            .await
            .map(|(response, _in_flight)| response)
    }
}

/// The part of the fill buffer budget a body being read holds.
struct Share {
    permits: Option<OwnedSemaphorePermit>,
    kib: usize,
}

impl Share {
    fn bytes(&self) -> usize {
        self.kib.saturating_mul(1024)
    }

    /// Grows the share to cover `bytes`; false if the budget cannot.
    fn grow(&mut self, origin: &Origin, bytes: usize) -> bool {
        let wanted = bytes.div_ceil(1024).max(64);
        if wanted <= self.kib {
            return true;
        }
        // Double what is needed, as a buffer grows, so as to come back rarely.
        let ask = |kib: usize| {
            let kib = u32::try_from(kib).unwrap_or(u32::MAX);
            origin
                .buffers
                .clone()
                .try_acquire_many_owned(kib)
                .ok()
                .map(|p| (p, kib))
        };
        let Some((permit, got)) = ask(wanted * 2 - self.kib).or_else(|| ask(wanted - self.kib))
        else {
            return false;
        };
        self.kib += got as usize;
        match &mut self.permits {
            Some(held) => held.merge(permit),
            None => self.permits = Some(permit),
        }
        true
    }

    fn into_budget(self) -> Budget {
        Budget {
            _permits: self.permits,
        }
    }
}

/// The error with its causes, on one line.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
