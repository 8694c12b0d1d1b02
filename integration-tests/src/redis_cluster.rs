//! A throwaway Redis Cluster: 3 masters and 3 replicas from the redis-server
//! binary on free ports, joined with `redis-cli --cluster create`.
//!
//! A cluster node also listens on its port + 10000 (the cluster bus), so a
//! port is only taken when that one is free too (and so at most 55535).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::{Launch, Supervised, find_program, free_port, wait_for_port};

/// How long a silent node is given before its replica takes over: short, so
/// a failover in a test takes seconds.
const NODE_TIMEOUT_MS: &str = "1000";

#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<Node>,
    cli: PathBuf,
    /// Every node's `requirepass` (and `masterauth`, for its replica).
    password: Option<String>,
    _dir: TempDir,
}

#[derive(Debug)]
struct Node {
    port: u16,
    process: Option<Supervised>,
}

impl RedisCluster {
    /// The cluster this test process shares. Tests keep apart by key prefix.
    pub fn shared() -> &'static RedisCluster {
        static SHARED: OnceLock<RedisCluster> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// A cluster of the calling test's own, stopped on drop.
    pub fn start() -> Self {
        Self::create(None)
    }

    /// A cluster of the calling test's own whose nodes require AUTH with
    /// `password`, as a managed cluster does.
    pub fn start_with_password(password: &str) -> Self {
        Self::create(Some(password.to_owned()))
    }

    fn create(password: Option<String>) -> Self {
        let server = find_program("redis-server", &[])
            .expect("redis-server not found: install redis-server");
        let cli = find_program("redis-cli", &[]).expect("redis-cli not found: install redis-tools");
        let dir = tempfile::Builder::new()
            .prefix("aq-test-redis-cluster-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let nodes: Vec<Node> = (0..6)
            .map(|i| {
                let port = cluster_port();
                let node_dir = dir.path().join(format!("node-{i}"));
                std::fs::create_dir_all(&node_dir).expect("node directory");
                let log = node_dir.join("redis.log");
                let mut args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    NODE_TIMEOUT_MS,
                    // A replica takes over however long ago it last heard its
                    // master (the default refuses a replica whose data looks old).
                    "--cluster-replica-validity-factor",
                    "0",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    &node_dir.to_string_lossy(),
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                if let Some(password) = &password {
                    args.extend(
                        ["--requirepass", password, "--masterauth", password].map(String::from),
                    );
                }
                let process = Supervised::spawn(&Launch {
                    program: &server,
                    args,
                    stop_signal: "TERM",
                    run_as: None,
                    cleanup: None,
                    log: &log,
                })
                .expect("cannot start a cluster node");
                assert!(
                    wait_for_port(port, Duration::from_secs(10)),
                    "cluster node did not start:\n{}",
                    process.log_tail()
                );
                Node {
                    port,
                    process: Some(process),
                }
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new(&cli);
        if let Some(password) = &password {
            create.env("REDISCLI_AUTH", password);
        }
        let output = create
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed:\n{}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self {
            nodes,
            cli,
            password,
            _dir: dir,
        };
        assert!(
            cluster.wait_until_ok(Duration::from_secs(30)),
            "the cluster did not become ok"
        );
        cluster
    }

    /// `REDIS_CLUSTER_NODES` for api-cache: every node, as a seed list.
    pub fn nodes_var(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A node's reply to `redis-cli` with these arguments.
    fn ask(&self, port: u16, args: &[&str]) -> Option<String> {
        let mut command = Command::new(&self.cli);
        if let Some(password) = &self.password {
            command.env("REDISCLI_AUTH", password);
        }
        let output = command
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn running(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.process.is_some())
    }

    /// Waits until every running node says `cluster_state:ok` and sees 3
    /// masters serving all slots.
    pub fn wait_until_ok(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let ok = self.running().all(|node| {
                self.ask(node.port, &["cluster", "info"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok && self.masters().len() == 3 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the cluster has replaced the master on `dead`: a replica
    /// promoted, every running node `cluster_state:ok`.
    pub fn wait_until_failed_over(&self, dead: u16, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let masters = self.masters();
            if !masters.contains(&dead) && masters.len() == 3 && self.wait_until_ok(Duration::ZERO)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The ports of the masters that are up, as the cluster sees them.
    pub fn masters(&self) -> Vec<u16> {
        let Some(node) = self.running().next() else {
            return Vec::new();
        };
        let Some(nodes) = self.ask(node.port, &["cluster", "nodes"]) else {
            return Vec::new();
        };
        nodes
            .lines()
            .filter(|line| {
                let flags = line.split(' ').nth(2).unwrap_or_default();
                flags.contains("master") && !flags.contains("fail")
            })
            .filter_map(|line| {
                let address = line.split(' ').nth(1)?;
                address.split(['@', ':']).nth(1)?.parse().ok()
            })
            .collect()
    }

    /// Kills a master with SIGKILL (no chance to hand over); returns its port.
    pub fn kill_a_master(&mut self) -> u16 {
        let port = *self.masters().first().expect("a master");
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("the master is one of ours");
        let mut process = node.process.take().expect("running");
        let status = Command::new("kill")
            .args(["-KILL", &process.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        process.stop();
        port
    }

    /// The keys under `prefix` on every master that is up.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let pattern = format!("{prefix}:*");
        let mut keys: Vec<String> = self
            .masters()
            .into_iter()
            .filter_map(|port| self.ask(port, &["--raw", "keys", &pattern]))
            .flat_map(|text| {
                text.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        keys.sort();
        keys
    }
}

/// A free port whose cluster bus port (+10000) is free as well.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port <= 55535 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}
