//! The origin (api-rest), reached with reqwest.
//!
//! For the cache, a response body is read into memory up to
//! `CACHE_MAX_BODY_BYTES` so it can be stored and shared; a larger one is handed
//! back as a stream (the part already read, then the rest) and passed through.
//! Other methods are forwarded with their bodies streamed both ways.

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream};
use http::{HeaderMap, Method, StatusCode};

use crate::cache::key::NormalizedTarget;
use crate::config::Config;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum OriginError {
    #[error("the origin cannot be reached: {0}")]
    Unreachable(String),
    #[error("the origin did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the origin's response broke off: {0}")]
    Broken(String),
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
    Complete(Bytes),
    /// Larger than the limit: what was read, and the live response for the rest.
    TooLarge {
        head: Bytes,
        rest: reqwest::Response,
    },
}

impl OriginBody {
    /// The whole body as a stream of chunks.
    pub(crate) fn into_stream(self) -> impl Stream<Item = Result<Bytes, reqwest::Error>> + Send {
        match self {
            Self::Complete(bytes) => stream::once(async { Ok(bytes) }).left_stream(),
            Self::TooLarge { head, rest } => stream::once(async { Ok(head) })
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
        Ok(Self {
            client,
            base_url: format!("http://{}:{}", config.backend_host, config.backend_port),
            timeout: config.backend_timeout(),
            max_body_bytes: config.cache_max_body_bytes,
        })
    }

    /// Sends a request and waits (at most the timeout) for the response headers.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OriginError> {
        match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_elapsed) => Err(OriginError::Timeout(self.timeout)),
            Ok(Err(error)) if error.is_timeout() => Err(OriginError::Timeout(self.timeout)),
            Ok(Err(error)) => Err(OriginError::Unreachable(describe(&error))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// `GET`s the target with `headers` (already prepared for the origin),
    /// reading the body for the cache.
    pub(crate) async fn get(
        &self,
        target: &NormalizedTarget,
        headers: HeaderMap,
    ) -> Result<OriginResponse, OriginError> {
        let request_time = SystemTime::now();
        let request = self
            .client
            .get(format!("{}{}", self.base_url, target.as_str()))
            .headers(headers);
        let mut response = self.send(request).await?;
        let response_time = SystemTime::now();
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let done = |body| OriginResponse {
            status,
            headers: headers.clone(),
            body,
            request_time,
            response_time,
        };
        // Too large to hold, or endless (server-sent events): passed through as it streams.
        let event_stream = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if event_stream
            || response
                .content_length()
                .is_some_and(|length| length > self.max_body_bytes as u64)
        {
            return Ok(done(OriginBody::TooLarge {
                head: Bytes::new(),
                rest: response,
            }));
        }
        let mut buffer = BytesMut::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    buffer.extend_from_slice(&chunk);
                    if buffer.len() > self.max_body_bytes {
                        return Ok(done(OriginBody::TooLarge {
                            head: buffer.freeze(),
                            rest: response,
                        }));
                    }
                }
                Ok(None) => break,
                Err(error) if error.is_timeout() => return Err(OriginError::Timeout(self.timeout)),
                Err(error) => return Err(OriginError::Broken(describe(&error))),
            }
        }
        Ok(done(OriginBody::Complete(buffer.freeze())))
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
        self.send(request).await
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
