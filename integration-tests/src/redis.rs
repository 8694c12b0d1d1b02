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
    /// With TLS: the CA certificate clients must trust.
    tls_ca: Option<PathBuf>,
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

    /// A server of the calling test's own that speaks only TLS (a certificate for
    /// 127.0.0.1 signed by a throwaway CA, see [`RedisServer::tls_ca`]) and
    /// requires AUTH with `password`.
    pub fn start_tls(password: &str) -> Self {
        Self::create_with(false, Some(password.to_owned()), true)
    }

    /// The CA certificate (PEM) of a TLS server.
    pub fn tls_ca(&self) -> Option<&std::path::Path> {
        self.tls_ca.as_deref()
    }

    fn create(shared: bool, password: Option<String>) -> Self {
        Self::create_with(shared, password, false)
    }

    fn create_with(shared: bool, password: Option<String>, tls: bool) -> Self {
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
        let tls_ca = tls.then(|| make_certificates(&dir));
        let mut server = Self {
            port: free_port(),
            password,
            tls_ca,
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
        let (plain_port, tls_args) = match &self.tls_ca {
            Some(ca) => {
                let file = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
                let args = vec![
                    "--tls-port".to_owned(),
                    self.port.to_string(),
                    "--tls-cert-file".to_owned(),
                    file("server.pem"),
                    "--tls-key-file".to_owned(),
                    file("server.key"),
                    "--tls-ca-cert-file".to_owned(),
                    ca.to_string_lossy().into_owned(),
                    "--tls-auth-clients".to_owned(),
                    "no".to_owned(),
                ];
                ("0".to_owned(), args)
            }
            None => (self.port.to_string(), Vec::new()),
        };
        let mut args: Vec<String> = [
            "--port",
            &plain_port,
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
        args.extend(tls_args);
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

/// A CA and a server certificate for 127.0.0.1 (openssl), in `dir`; returns the CA's path.
fn make_certificates(dir: &std::path::Path) -> PathBuf {
    let run = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl not found: install openssl");
        assert!(status.success(), "openssl {args:?} failed");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=air-quality-test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write san.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
    ]);
    dir.join("ca.pem")
}

/// The keys holding entries (or Vary indexes) under `prefix`: tag sets, locks
/// and variant sets left out. Writes to Redis happen in the background, so this
/// waits up to two seconds for at least `at_least` of them.
pub async fn entry_keys(
    connection: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
    at_least: usize,
) -> Vec<String> {
    use redis::AsyncCommands;
    let mut keys = Vec::new();
    for _ in 0..40 {
        let all: Vec<String> = connection.keys(format!("{prefix}:*")).await.expect("KEYS");
        keys = all
            .into_iter()
            .filter(|k| !k.contains(":tag:") && !k.ends_with(":lock") && !k.ends_with(":variants"))
            .collect();
        keys.sort();
        if keys.len() >= at_least {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    keys
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
