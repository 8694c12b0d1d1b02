//! The connection to Redis: one node (`REDIS_HOST`), through a connection
//! manager that reconnects; or a cluster (`REDIS_CLUSTER_NODES`), through the
//! cluster client, which routes each command to the node holding its key's
//! slot and follows the cluster through failovers. Both are made lazily, so
//! api-cache starts without Redis.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{
    Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisFuture,
    TlsCertificates, Value,
};
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::storage::StoreError;

#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use (and made again after a failed
/// attempt), since the cluster client connects eagerly.
pub(super) struct LazyCluster {
    client: ClusterClient,
    connection: Mutex<Option<ClusterConnection>>,
}

impl LazyCluster {
    async fn get(&self) -> redis::RedisResult<ClusterConnection> {
        let held = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(connection) = held {
            return Ok(connection);
        }
        let connection = self.client.get_async_connection().await?;
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
        Ok(connection)
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(connection) => connection.req_packed_command(cmd),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut connection = lazy.get().await?;
                connection.req_packed_command(cmd).await
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(lazy) => Box::pin(async move {
                let mut connection = lazy.get().await?;
                connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(connection) => connection.get_db(),
            Self::Cluster(_) => 0,
        }
    }
}

/// What follows the replicas' events: a pub/sub client on one node; on a
/// cluster, a RESP3 cluster client whose pushes go to `on_push`.
#[derive(Clone)]
pub(super) enum Subscriber {
    Single(Arc<redis::Client>),
    Cluster(Arc<ClusterClient>),
}

/// Prepares the command connection and the subscriber's client, without connecting.
pub(super) fn connect_lazy(
    config: &Config,
    on_push: impl Fn(redis::PushInfo) -> Result<(), ()> + Send + Sync + 'static,
) -> Result<(Connection, Subscriber), StoreError> {
    let timeout = config.redis_timeout();
    match config.redis_cluster_seeds() {
        None => {
            let client = single_client(config)?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                // One attempt per reconnection: a refused connection fails at once and
                // the next command tries again, instead of queueing behind a backoff.
                .set_number_of_retries(0);
            let connection =
                ConnectionManager::new_lazy_with_config(client.clone(), manager_config)?;
            Ok((
                Connection::Single(connection),
                Subscriber::Single(Arc::new(client)),
            ))
        }
        Some(seeds) => {
            let commands = cluster_builder(config, &seeds)?
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // One quick retry: a MOVED after a failover is followed at once;
                // a node that is down fails fast and the breaker takes over.
                .retries(1)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()?;
            let events = cluster_builder(config, &seeds)?
                .connection_timeout(Duration::from_secs(5))
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(on_push)
                .build()?;
            let connection = Connection::Cluster(Arc::new(LazyCluster {
                client: commands,
                connection: Mutex::new(None),
            }));
            Ok((connection, Subscriber::Cluster(Arc::new(events))))
        }
    }
}

fn address(config: &Config, host: &str, port: u16) -> Result<ConnectionInfo, StoreError> {
    let address = if config.redis_tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    };
    let info = address.into_connection_info()?;
    let mut settings = info.redis_settings().clone().set_db(config.redis_db);
    if let Some(username) = &config.redis_username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.redis_password {
        settings = settings.set_password(password.expose_secret());
    }
    Ok(info.set_redis_settings(settings))
}

fn root_certificate(config: &Config) -> Result<Option<TlsCertificates>, StoreError> {
    match (&config.redis_tls, &config.redis_tls_ca_file) {
        (true, Some(ca_file)) => Ok(Some(TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca_file).map_err(StoreError::CaFile)?),
        })),
        _ => Ok(None),
    }
}

fn single_client(config: &Config) -> Result<redis::Client, StoreError> {
    let info = address(config, &config.redis_host, config.redis_port)?;
    Ok(match root_certificate(config)? {
        Some(certificates) => redis::Client::build_with_tls(info, certificates)?,
        None => redis::Client::open(info)?,
    })
}

fn cluster_builder(
    config: &Config,
    seeds: &[(String, u16)],
) -> Result<ClusterClientBuilder, StoreError> {
    let nodes = seeds
        .iter()
        .map(|(host, port)| address(config, host, *port))
        .collect::<Result<Vec<_>, _>>()?;
    let builder = ClusterClientBuilder::new(nodes);
    Ok(match root_certificate(config)? {
        Some(certificates) => builder.certs(certificates),
        None => builder,
    })
}
