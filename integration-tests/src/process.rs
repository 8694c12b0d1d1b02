//! Starting server processes that cannot outlive the tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the server in the background, prints its PID, then blocks reading
/// stdin. When stdin closes (the test process closed it, or died), it stops the
/// server by PID with the given signal, waits for it, and removes the cleanup
/// directory if one was given.
const WATCHDOG: &str = r#"
sig="$1"; cleanup="$2"; log="$3"; shift 3
"$@" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid"
cat >/dev/null
kill -s "$sig" "$pid" 2>/dev/null
wait "$pid"
if [ -n "$cleanup" ]; then rm -rf "$cleanup"; fi
"#;

/// A server process under a watchdog.
#[derive(Debug)]
pub struct Supervised {
    watchdog: Child,
    lifeline: Option<ChildStdin>,
    pid: u32,
    log: PathBuf,
}

/// How to start a supervised server.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub program: &'a Path,
    pub args: Vec<String>,
    /// Signal that stops it cleanly (`INT` for PostgreSQL's fast shutdown, `TERM` for Redis).
    pub stop_signal: &'a str,
    /// Run as this (uid, gid): PostgreSQL refuses to run as root.
    pub run_as: Option<(u32, u32)>,
    /// Removed by the watchdog after the server stops (for servers that live until exit).
    pub cleanup: Option<&'a Path>,
    pub log: &'a Path,
}

impl Supervised {
    pub fn spawn(launch: &Launch<'_>) -> std::io::Result<Self> {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg("watchdog")
            .arg(launch.stop_signal)
            .arg(launch.cleanup.map(Path::as_os_str).unwrap_or_default())
            .arg(launch.log)
            .arg(launch.program)
            .args(&launch.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((uid, gid)) = launch.run_as {
            command.uid(uid).gid(gid);
            if let Some(dir) = launch.log.parent() {
                command.current_dir(dir);
            }
        }
        let mut watchdog = command.spawn()?;
        let lifeline = watchdog.stdin.take();
        let stdout = watchdog
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let pid = line.trim().parse().map_err(|_| {
            std::io::Error::other(format!("watchdog printed '{line}' instead of a PID"))
        })?;
        Ok(Self {
            watchdog,
            lifeline,
            pid,
            log: launch.log.to_owned(),
        })
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Stops the server cleanly and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut lifeline) = self.lifeline.take() {
            let _ = lifeline.flush();
            drop(lifeline);
            let _ = self.watchdog.wait();
        }
    }

    /// The server's log so far, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// The (uid, gid) of a system user, from `id`.
pub fn user_ids(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(user).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .is_some_and(|s| s.trim() == "0")
}

/// Finds a program: in `dir` if given, else on PATH.
pub fn find_program(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.iter()
        .chain(path_dirs.iter())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A child process killed (and reaped) when dropped, even if the test panics.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
