//! The two services as their real executables, each a child process: for what
//! only a process shows (its resident memory, its sockets) and for requests
//! no HTTP client library would send (raw bytes over TCP).

use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::TestDatabase;
use crate::process::{KillOnDrop, free_port, wait_for_port};

/// One service binary, running.
#[derive(Debug)]
pub struct Service {
    process: KillOnDrop,
    pub port: u16,
    pub admin_port: u16,
    log: tempfile::NamedTempFile,
}

impl Service {
    /// Starts `name` (`api-rest` or `api-cache`) with only these variables
    /// (plus its two ports and `BIND_ADDRESS`), and waits until both ports answer.
    pub fn start(name: &str, env: &[(String, String)]) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let (port_variable, admin_variable) = match name {
            "api-rest" => ("API_REST_PORT", "API_REST_ADMIN_PORT"),
            _ => ("API_CACHE_PORT", "API_CACHE_ADMIN_PORT"),
        };
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(crate::binary(name))
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env(port_variable, port.to_string())
            .env(admin_variable, admin_port.to_string())
            .env("BIND_ADDRESS", "127.0.0.1")
            .stdout(log.reopen().expect("log file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start the service binary");
        let service = Self {
            process: KillOnDrop(child),
            port,
            admin_port,
            log,
        };
        for port in [port, admin_port] {
            assert!(
                wait_for_port(port, Duration::from_secs(20)),
                "{name} did not open port {port}:\n{}",
                service.log_tail()
            );
        }
        service
    }

    /// Resident memory now, in KiB (`VmRSS`).
    pub fn resident_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    /// The most resident memory so far, in KiB (`VmHWM`).
    pub fn peak_resident_kib(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.0.id()))
            .expect("the service exited");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// The last lines it logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Kills it and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }
}

/// api-rest on a fresh database and api-cache in front of it, as processes.
#[derive(Debug)]
pub struct ExecutableStack {
    pub db: TestDatabase,
    pub rest: Service,
    pub cache: Service,
    /// api-cache's `CACHE_KEY_PREFIX`.
    pub key_prefix: String,
}

impl ExecutableStack {
    /// Both services with `RUST_LOG=warn`, the cache on the Redis at
    /// `redis_port`; `settings` go to both (and win).
    pub async fn start(redis_port: u16, settings: &[(&str, &str)]) -> Self {
        let db = crate::PostgresServer::shared().create_database();
        let quiet = crate::apps::vars(&[("RUST_LOG", "warn")]);
        let settings = crate::apps::vars(settings);
        let rest_env = [db.rest_env(), quiet.clone(), settings.clone()].concat();
        let rest = tokio::task::spawn_blocking(move || Service::start("api-rest", &rest_env))
            .await
            .expect("api-rest started");
        let mut cache_env = crate::apps::cache_env(redis_port, rest.port);
        cache_env.push(("BACKEND_ADMIN_PORT".into(), rest.admin_port.to_string()));
        let key_prefix = cache_env
            .iter()
            .find(|(name, _)| name == "CACHE_KEY_PREFIX")
            .map(|(_, prefix)| prefix.clone())
            .unwrap_or_default();
        let cache_env = [cache_env, quiet, settings].concat();
        let cache = tokio::task::spawn_blocking(move || Service::start("api-cache", &cache_env))
            .await
            .expect("api-cache started");
        let stack = Self {
            db,
            rest,
            cache,
            key_prefix,
        };
        stack.wait_for_change_feed().await;
        stack
    }

    /// Until api-cache has heard api-rest's change feed, a stored answer may
    /// be retired by its first event (see `Running::wait_for_change_feed`).
    async fn wait_for_change_feed(&self) {
        let admin = self.cache.admin_port;
        let heard = crate::eventually(Duration::from_secs(10), || async move {
            let ready = raw_get(admin, "/readyz").await;
            let ready: serde_json::Value = serde_json::from_slice(&ready.body).unwrap_or_default();
            ready["data_version"].as_u64().unwrap_or(0) >= 1
        })
        .await;
        assert!(heard, "api-cache never heard api-rest's change feed");
    }
}

/// An answer read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// The status line and headers, as sent.
    pub head: String,
    /// The body as sent (chunked framing included).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value (the first one), by name in any case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then_some(value.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Longest a raw exchange may take before the test gives up on it.
const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` as is on a new connection to 127.0.0.1:`port` and reads
/// until the server closes it (so the request should say `Connection: close`).
pub async fn raw_exchange(port: u16, request: &[u8]) -> std::io::Result<RawResponse> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request).await?;
        let mut received = Vec::new();
        stream.read_to_end(&mut received).await?;
        Ok::<_, std::io::Error>(received)
    };
    let received = tokio::time::timeout(RAW_TIMEOUT, exchange)
        .await
        .map_err(|_| std::io::Error::other("no answer in time"))??;
    parse(&received)
}

/// `GET path_and_query` (sent byte for byte, unnormalized) with `Connection: close`.
pub async fn raw_get(port: u16, path_and_query: &str) -> RawResponse {
    let request =
        format!("GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    raw_exchange(port, request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"))
}

fn parse(received: &[u8]) -> std::io::Result<RawResponse> {
    let end = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("the connection closed before a response head"))?;
    let head = String::from_utf8_lossy(&received[..end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok(RawResponse {
        status,
        head,
        body: received[end + 4..].to_vec(),
    })
}
