//! Building the application on a listener, and running it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use service_kit::lifecycle::{self, Site};
use service_kit::{ConfigError, Lifecycle, Metrics, RuntimeConfig};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::routes::{self, AppState};
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

/// A bound, not yet serving, api-rest. `API_REST_PORT=0` (and
/// `API_REST_ADMIN_PORT=0`) pick free ports; [`Application::port`] and
/// [`Application::admin_port`] tell which.
#[derive(Debug)]
pub struct Application {
    public: (TcpListener, u16),
    admin: (TcpListener, u16),
    state: AppState,
    runtime: RuntimeConfig,
}

impl Application {
    pub async fn build(config: Config, runtime: RuntimeConfig) -> Result<Self, StartupError> {
        let store = Store::connect_lazy(&config)?;
        let ip = runtime.bind_address;
        let bind = |port: u16| async move {
            let address = SocketAddr::new(ip, port);
            lifecycle::bind(address)
                .await
                .map_err(|source| StartupError::Bind { address, source })
        };
        let public = bind(config.api_rest_port).await?;
        let admin = bind(config.api_rest_admin_port).await?;
        let state = AppState {
            store,
            metrics: Metrics::new(),
            lifecycle: Lifecycle::new(),
            max_limit: config.query_max_limit,
            readiness_timeout: config.readiness_timeout(),
            cache_control: config.cache_control().into(),
            versions: crate::changes::DataVersions::default(),
            changes_subscribers: Arc::new(Semaphore::new(config.changes_max_subscribers)),
            request_limits: runtime.request_limits(),
            openapi: crate::routes::openapi_document(config.query_max_limit),
        };
        Ok(Self {
            public,
            admin,
            state,
            runtime,
        })
    }

    pub fn port(&self) -> u16 {
        self.public.1
    }

    pub fn admin_port(&self) -> u16 {
        self.admin.1
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
        let (public, admin) = (
            routes::public(self.state.clone()),
            routes::admin(self.state),
        );
        let result = lifecycle::serve(
            Site {
                listener: self.public.0,
                handler_for: move |_peer| public.clone(),
            },
            Site {
                listener: self.admin.0,
                handler_for: move |_peer| admin.clone(),
            },
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
