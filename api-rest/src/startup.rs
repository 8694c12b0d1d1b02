//! Building the application on a listener, and running it until shutdown.

use std::future::Future;
use std::net::SocketAddr;

use service_kit::{ConfigError, Lifecycle, Metrics, RuntimeConfig, lifecycle};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::routes::{AppState, router};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, not yet serving, api-rest. `API_REST_PORT=0` picks a free port;
/// [`Application::port`] tells which.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    port: u16,
    state: AppState,
    runtime: RuntimeConfig,
}

impl Application {
    pub async fn build(config: Config, runtime: RuntimeConfig) -> Result<Self, StartupError> {
        let store = Store::connect_lazy(&config)?;
        let address = SocketAddr::new(runtime.bind_address, config.api_rest_port);
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| StartupError::Bind { address, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { address, source })?
            .port();
        let state = AppState {
            store,
            metrics: Metrics::new(),
            lifecycle: Lifecycle::new(),
            max_limit: config.query_max_limit,
            readiness_timeout: config.readiness_timeout(),
            cache_control: config.cache_control().into(),
            versions: crate::changes::DataVersions::default(),
        };
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

    /// Serves until `shutdown` resolves, drains, then closes the database pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let store = self.state.store.clone();
        let lifecycle = self.state.lifecycle.clone();
        self.state.metrics.spawn_upkeep(lifecycle.stopped());
        crate::changes::spawn_listener(
            store.clone(),
            self.state.versions.clone(),
            lifecycle.stopped(),
        );
        let router = router(self.state);
        let result = lifecycle::serve(
            self.listener,
            move |_peer| router.clone(),
            lifecycle,
            &self.runtime,
            shutdown,
        )
        .await;
        store.close().await;
        tracing::info!("api-rest stopped");
        result
    }
}
