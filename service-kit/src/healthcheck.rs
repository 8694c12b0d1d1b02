//! `<binary> healthcheck`: asks the local server's `/healthz` and exits 0 or 1.
//!
//! The runtime image has no shell and no curl, so the container runtime runs the
//! service binary itself as its health probe. A plain HTTP/1.1 request over a
//! TcpStream is all that needs; no HTTP client is linked for it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

/// If the first argument is `healthcheck`, probes `http://127.0.0.1:<port>/healthz`
/// and returns the exit code to end the process with.
pub fn run_if_requested(port_variable: &str, default_port: u16) -> Option<ExitCode> {
    if std::env::args().nth(1).as_deref() != Some("healthcheck") {
        return None;
    }
    let port = std::env::var(port_variable)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_port);
    Some(match probe(SocketAddr::from(([127, 0, 0, 1], port))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("healthcheck failed: {reason}");
            ExitCode::FAILURE
        }
    })
}

/// Sends `GET /healthz` and succeeds on a 200 status line.
pub fn probe(address: SocketAddr) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&address, TIMEOUT).map_err(|e| format!("{address}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 32];
    let read = stream.read(&mut head).map_err(|e| e.to_string())?;
    let status_line = String::from_utf8_lossy(&head[..read]);
    if status_line.starts_with("HTTP/1.1 200") || status_line.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "unexpected answer: {}",
            status_line.lines().next().unwrap_or("")
        ))
    }
}
