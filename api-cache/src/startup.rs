//! Building the application on a listener, and running it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use service_kit::{Lifecycle, Metrics, RuntimeConfig, lifecycle};
use tokio::net::TcpListener;

use crate::cache::coalesce::Coalescer;
use crate::cache::policy::Policy;
use crate::config::Config;
use crate::origin::Origin;
use crate::routes::{AppState, router};
use crate::store::{RedisStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid Redis settings: {0}")]
    Redis(#[from] StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet serving, api-cache. `API_CACHE_PORT=0` picks a free port.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    runtime: RuntimeConfig,
}

impl Application {
    pub async fn build(config: Config, runtime: RuntimeConfig) -> Result<Self, StartupError> {
        let state = AppState {
            redis: RedisStore::connect_lazy(&config)?,
            origin: Origin::new(&config)?,
            flights: Coalescer::new(config.cache_coalesce_max_waiters),
            policy: Policy {
                default_ttl: Duration::from_secs(config.cache_ttl_seconds),
                grace: Duration::from_secs(config.cache_grace_seconds),
                max_body_bytes: config.cache_max_body_bytes,
                compress: config.cache_compression == "gzip",
            },
            key_prefix: Arc::from(config.cache_key_prefix.as_str()),
            coalesce_wait: config.coalesce_wait(),
            metrics: Metrics::new(),
            lifecycle: Lifecycle::new(),
        };
        let address = SocketAddr::new(runtime.bind_address, config.api_cache_port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();
        Ok(Self {
            listener,
            port,
            state,
            runtime,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let lifecycle = self.state.lifecycle.clone();
        let result = lifecycle::serve(
            self.listener,
            router(self.state),
            lifecycle,
            &self.runtime,
            shutdown,
        )
        .await;
        tracing::info!("api-cache stopped");
        result
    }
}
