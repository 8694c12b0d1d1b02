//! `aq-bench-origin`: the origin the benchmarks in `bench/` put the caches in
//! front of. Every GET is answered with a JSON array of air-quality rows in
//! api-rest's format, without `Cache-Control` (each cache applies its own
//! lifetime), from bytes built once per row count.
//!
//! ```text
//! aq-bench-origin --port 7000 --rows 1000 [--delay-ms 1000]
//! curl localhost:7000/anything            # --rows rows
//! curl localhost:7000/anything?rows=10    # 10 rows
//! curl 'localhost:7000/x?delay_ms=6000'   # this one answers after 6 s
//! curl localhost:7000/_origin/requests    # how many row requests were answered
//! ```

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use http::header;

const USAGE: &str = "usage: aq-bench-origin --port P [--rows N] [--delay-ms D]";

#[derive(Debug, Clone)]
struct Origin {
    rows: u64,
    delay: Duration,
    answered: Arc<AtomicU64>,
    bodies: Arc<Mutex<HashMap<u64, Bytes>>>,
}

impl Origin {
    fn body(&self, rows: u64) -> Bytes {
        let mut bodies = self
            .bodies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bodies
            .entry(rows)
            .or_insert_with(|| rows_json(rows))
            .clone()
    }
}

/// `rows` generated measurements as api-rest writes them: `[`, one object per
/// line, `]`.
fn rows_json(rows: u64) -> Bytes {
    let options = datagen::Options {
        rows: Some(rows),
        ..datagen::Options::default()
    };
    let mut out = String::from("[");
    for (i, row) in datagen::Generator::new(options).enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        let t = row.time_instant;
        out.push_str(&format!(
            "{{\"time_instant\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z\",\"id_entity\":\"{}\"",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond(),
            row.id_entity
        ));
        for (name, value) in [
            ("so2", row.so2),
            ("no2", row.no2),
            ("co", row.co),
            ("o3", row.o3),
            ("pm10", row.pm10),
            ("pm2_5", row.pm2_5),
        ] {
            match value {
                Some(v) => out.push_str(&format!(",\"{name}\":{v}")),
                None => out.push_str(&format!(",\"{name}\":null")),
            }
        }
        out.push('}');
    }
    out.push_str("\n]\n");
    Bytes::from(out)
}

/// The value of `name` in the query, if it is a number.
fn number(request: &Request, name: &str) -> Option<u64> {
    request
        .uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?
        .parse()
        .ok()
}

async fn rows(State(origin): State<Origin>, request: Request) -> Response {
    let rows = number(&request, "rows").unwrap_or(origin.rows);
    let delay = number(&request, "delay_ms").map_or(origin.delay, Duration::from_millis);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    origin.answered.fetch_add(1, Ordering::Relaxed);
    (
        [(header::CONTENT_TYPE, "application/json")],
        origin.body(rows),
    )
        .into_response()
}

async fn answered(State(origin): State<Origin>) -> String {
    origin.answered.load(Ordering::Relaxed).to_string()
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<(u16, Origin), String> {
    let (mut port, mut rows, mut delay_ms) = (None, 10, 0);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(USAGE)?;
        let number = |v: &str| v.parse::<u64>().map_err(|_| format!("{flag}: {v}?"));
        match flag.as_str() {
            "--port" => port = Some(u16::try_from(number(&value)?).map_err(|e| e.to_string())?),
            "--rows" => rows = number(&value)?,
            "--delay-ms" => delay_ms = number(&value)?,
            _ => return Err(USAGE.to_owned()),
        }
    }
    let origin = Origin {
        rows,
        delay: Duration::from_millis(delay_ms),
        answered: Arc::default(),
        bodies: Arc::default(),
    };
    Ok((port.ok_or(USAGE)?, origin))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (port, origin) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let app = Router::new()
        .route("/_origin/requests", get(answered))
        .fallback(rows)
        .with_state(origin);
    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("aq-bench-origin: cannot listen on {port}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match axum::serve(listener, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aq-bench-origin: {error}");
            ExitCode::FAILURE
        }
    }
}
