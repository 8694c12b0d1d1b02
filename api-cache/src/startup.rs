//! Building the application on a listener, and running it until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use service_kit::lifecycle::{self, Site};
use service_kit::{Lifecycle, Metrics, RuntimeConfig};
use tokio::net::TcpListener;

use crate::cache::coalesce::Coalescer;
use crate::cache::policy::Policy;
use crate::changes::{Generation, spawn_follower};
use crate::config::Config;
use crate::metrics::CacheMetrics;
use crate::origin::Origin;
use crate::routes::{self, AppState, Context, Front};
use crate::storage::local::LocalTier;
use crate::storage::redis::RedisStore;
use crate::storage::{SharedStore, Storage, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid Redis settings: {0}")]
    Redis(String),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
}

impl From<StoreError> for StartupError {
    fn from(error: StoreError) -> Self {
        Self::Redis(error.to_string())
    }
}

/// A bound, not yet serving, api-cache. `API_CACHE_PORT=0` (and
/// `API_CACHE_ADMIN_PORT=0`) pick free ports.
#[derive(Debug)]
pub struct Application {
    public: (TcpListener, u16),
    admin: (TcpListener, u16),
    state: AppState,
    runtime: RuntimeConfig,
}

impl Application {
    pub async fn build(config: Config, runtime: RuntimeConfig) -> Result<Self, StartupError> {
        let state = AppState::new(context(&config, &runtime)?);
        state.storage.start(state.lifecycle.stopped());
        state.registry.spawn_upkeep(state.lifecycle.stopped());
        if !config.backend_changes_path.is_empty() {
            let url = format!(
                "http://{}:{}{}",
                config.backend_host, config.backend_admin_port, config.backend_changes_path
            );
            spawn_follower(url, state.generation.clone(), state.lifecycle.stopped());
        }
        let ip = runtime.bind_address;
        let bind = |port: u16| async move {
            let address = SocketAddr::new(ip, port);
            lifecycle::bind(address)
                .await
                .map_err(|source| StartupError::Bind { address, source })
        };
        let public = bind(config.api_cache_port).await?;
        let admin = bind(config.api_cache_admin_port).await?;
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

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let lifecycle = self.state.lifecycle.clone();
        let front = Front::new(self.state.clone());
        let admin = routes::admin(self.state);
        let result = lifecycle::serve(
            Site {
                listener: self.public.0,
                handler_for: move |peer: SocketAddr| front.for_peer(peer.ip()),
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
        tracing::info!("api-cache stopped");
        result
    }
}

/// What the handlers share, from the configuration.
fn context(config: &Config, runtime: &RuntimeConfig) -> Result<Context, StartupError> {
    let registry = Metrics::new();
    let metrics = CacheMetrics::register(&registry);
    let redis = RedisStore::connect_lazy(config, metrics.clone())?;
    context_with(config, runtime, Arc::new(redis), registry, metrics)
}

/// What the handlers share, over the given shared store.
pub(crate) fn context_with(
    config: &Config,
    runtime: &RuntimeConfig,
    shared: Arc<dyn SharedStore>,
    registry: Metrics,
    metrics: CacheMetrics,
) -> Result<Context, StartupError> {
    // An entry holds its body decoded and, for text, gzip-compressed too.
    let largest_entry = 2 * config.cache_max_body_bytes as u64;
    let local = LocalTier::new(config.cache_local_max_bytes, largest_entry);
    Ok(Context {
        storage: Storage::new(local, shared, metrics.clone()),
        origin: Origin::new(config)?,
        flights: Coalescer::new(config.cache_coalesce_max_waiters),
        pass_flights: Coalescer::new(config.cache_coalesce_max_waiters),
        policy: Policy {
            default_ttl: Duration::from_secs(config.cache_ttl_seconds),
            grace: Duration::from_secs(config.cache_grace_seconds),
            max_body_bytes: config.cache_max_body_bytes,
            compress: config.cache_compression == "gzip",
            stale_while_revalidate: Duration::from_secs(
                config.cache_stale_while_revalidate_seconds,
            ),
        },
        coalesce_wait: config.coalesce_wait(),
        lock_ttl: config.lock_ttl(),
        generation: Generation::default(),
        purge_token: config.cache_purge_token.clone(),
        metrics,
        registry,
        lifecycle: Lifecycle::new(),
        request_limits: runtime.request_limits(),
    })
}
