//! Building the application on a listener, and running it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use service_kit::{Lifecycle, Metrics, RuntimeConfig, lifecycle};
use tokio::net::TcpListener;

use crate::cache::coalesce::Coalescer;
use crate::cache::policy::Policy;
use crate::changes::{Generation, spawn_follower};
use crate::config::Config;
use crate::origin::Origin;
use crate::routes::{AppState, router};
use crate::storage::Storage;
use crate::storage::local::LocalCache;
use crate::storage::redis::{RedisStore, StoreError};

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
        let metrics = Metrics::new();
        let redis = RedisStore::connect_lazy(&config, metrics.clone())?;
        let local = LocalCache::new(config.cache_local_max_bytes);
        let state = AppState {
            storage: Storage::new(redis, local, &config.cache_key_prefix, metrics.clone()),
            origin: Origin::new(&config)?,
            flights: Coalescer::new(config.cache_coalesce_max_waiters),
            policy: Policy {
                default_ttl: Duration::from_secs(config.cache_ttl_seconds),
                grace: Duration::from_secs(config.cache_grace_seconds),
                max_body_bytes: config.cache_max_body_bytes,
                compress: config.cache_compression == "gzip",
                stale_while_revalidate: Duration::from_secs(
                    config.cache_stale_while_revalidate_seconds,
                ),
            },
            key_prefix: Arc::from(config.cache_key_prefix.as_str()),
            coalesce_wait: config.coalesce_wait(),
            lock_ttl: config.lock_ttl(),
            generation: Generation::default(),
            purge_token: config.cache_purge_token.clone().map(Arc::new),
            metrics,
            lifecycle: Lifecycle::new(),
        };
        state.storage.start(state.lifecycle.stopped());
        if !config.backend_changes_path.is_empty() {
            let url = format!(
                "http://{}:{}{}",
                config.backend_host, config.backend_port, config.backend_changes_path
            );
            spawn_follower(url, state.generation.clone(), state.lifecycle.stopped());
        }
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
