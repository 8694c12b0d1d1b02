//! Throwaway Redis servers: no persistence, a free port, optionally a password.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{Launch, Supervised, find_program, free_port, wait_for_port};

#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    password: Option<String>,
    program: PathBuf,
    dir: PathBuf,
    process: Option<Supervised>,
    _owned_dir: Option<TempDir>,
    shared: bool,
}

impl RedisServer {
    /// The server this test process shares. Tests keep apart by key prefix.
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(|| Self::create(true, None))
    }

    /// A server of the calling test's own, stopped on drop.
    pub fn start() -> Self {
        Self::create(false, None)
    }

    /// A server of the calling test's own that requires AUTH with `password`.
    pub fn start_with_password(password: &str) -> Self {
        Self::create(false, Some(password.to_owned()))
    }

    fn create(shared: bool, password: Option<String>) -> Self {
        let program = find_program("redis-server", &[])
            .expect("redis-server not found: install redis-server");
        let temp = tempfile::Builder::new()
            .prefix("aq-test-redis-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let dir = temp.path().to_owned();
        let owned_dir = if shared {
            let _kept = temp.keep();
            None
        } else {
            Some(temp)
        };
        let mut server = Self {
            port: free_port(),
            password,
            program,
            dir,
            process: None,
            _owned_dir: owned_dir,
            shared,
        };
        server.start_again();
        server
    }

    /// Starts the server (again) on the same port; it starts empty.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "redis is already running");
        let mut args: Vec<String> = [
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &self.dir.to_string_lossy(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(password) = &self.password {
            args.extend(["--requirepass".to_owned(), password.clone()]);
        }
        let log = self.dir.join("redis.log");
        let process = Supervised::spawn(&Launch {
            program: &self.program,
            args,
            stop_signal: "TERM",
            run_as: None,
            cleanup: self.shared.then_some(self.dir.as_path()),
            log: &log,
        })
        .expect("cannot start redis-server");
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "redis did not start:\n{}",
            process.log_tail()
        );
        self.process = Some(process);
    }

    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A client connection for assertions (`TTL`, `GET`, `KEYS`).
    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        let auth = self
            .password
            .as_ref()
            .map(|p| format!(":{p}@"))
            .unwrap_or_default();
        redis::Client::open(format!("redis://{auth}127.0.0.1:{}/", self.port))
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
