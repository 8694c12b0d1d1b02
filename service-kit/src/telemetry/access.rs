//! The access line: one per request, after its response. In JSON it has the
//! same members as every other log line (`timestamp`, `level`, `target`,
//! `message`) plus the request's. It is written here rather than through the
//! log formatter, which would rebuild the request's span fields and format the
//! clock for every line; `RUST_LOG` still decides whether it is written.
//!
//! Each worker thread gathers its lines and hands them to the writer thread
//! in batches: when [`BATCH_BYTES`] have gathered, and whenever the worker runs
//! out of work ([`flush`], from the runtime's park hook). Under load that is
//! one hand-over per batch instead of one per request; when idle, a line is
//! written at once.

use std::cell::RefCell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Level;

use super::writer::LineWriter;

/// What the access line says of a request.
#[derive(Debug)]
pub(super) struct Record<'a> {
    pub method: &'static str,
    pub route: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency: Duration,
    pub cache: &'a str,
    pub request_id: &'a str,
}

/// Writes the line: JSON to `json` when JSON logs are on, else through `tracing`.
pub(super) fn log(record: &Record<'_>, json: Option<&LineWriter>) {
    if !tracing::enabled!(target: "access", Level::INFO) {
        return;
    }
    let Some(writer) = json else {
        tracing::info!(
            target: "access",
            method = record.method,
            route = record.route,
            path = record.path,
            status = record.status,
            latency_ms = record.latency.as_secs_f64() * 1000.0,
            cache = record.cache,
            request_id = record.request_id,
            "request"
        );
        return;
    };
    PENDING.with_borrow_mut(|pending| {
        json_line(pending, record, SystemTime::now());
        if pending.len() >= BATCH_BYTES {
            hand_over(pending, writer);
        }
    });
}

/// Lines gathered before they are handed to the writer thread.
const BATCH_BYTES: usize = 16 * 1024;

thread_local! {
    static PENDING: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(BATCH_BYTES + 1024));
}

/// Hands this thread's gathered lines to the writer thread.
pub(super) fn flush(writer: &LineWriter) {
    // A thread that is being torn down has no lines left to hand over.
    let _ = PENDING.try_with(|pending| {
        if let Ok(mut pending) = pending.try_borrow_mut()
            && !pending.is_empty()
        {
            hand_over(&mut pending, writer);
        }
    });
}

fn hand_over(pending: &mut Vec<u8>, writer: &LineWriter) {
    // A full queue drops the batch (counted); the worker never waits.
    writer.hand_over(std::mem::replace(
        pending,
        Vec::with_capacity(BATCH_BYTES + 1024),
    ));
}

/// `{"timestamp":…,"level":"INFO","target":"access","message":"request",…}` and a newline.
fn json_line(out: &mut Vec<u8>, record: &Record<'_>, now: SystemTime) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out, now);
    out.extend_from_slice(
        b"\",\"level\":\"INFO\",\"target\":\"access\",\"message\":\"request\",\"method\":\"",
    );
    out.extend_from_slice(record.method.as_bytes());
    out.extend_from_slice(b"\",\"route\":");
    string(out, record.route);
    out.extend_from_slice(b",\"path\":");
    string(out, record.path);
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.status).as_bytes());
    let micros = record.latency.as_micros();
    out.extend_from_slice(b",\"latency_ms\":");
    out.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
    out.push(b'.');
    fixed(out, (micros % 1000) as u32, 3);
    out.extend_from_slice(b",\"cache\":");
    string(out, record.cache);
    out.extend_from_slice(b",\"request_id\":");
    string(out, record.request_id);
    out.extend_from_slice(b"}\n");
}

/// A JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if byte >= 0x20 && byte != b'"' && byte != b'\\' {
            continue;
        }
        out.extend_from_slice(&bytes[plain..i]);
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            _ => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        plain = i + 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `value` in exactly `digits` digits, zero-padded.
fn fixed(out: &mut Vec<u8>, value: u32, digits: u32) {
    for position in (0..digits).rev() {
        out.push(b'0' + ((value / 10u32.pow(position)) % 10) as u8);
    }
}

/// RFC 3339 in UTC with microseconds, as the other log lines: the date and
/// time of day are worked out once per second per thread.
fn timestamp(out: &mut Vec<u8>, now: SystemTime) {
    thread_local! {
        static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
    }
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    SECOND.with_borrow_mut(|(cached, prefix)| {
        if *cached != seconds {
            *cached = seconds;
            *prefix = second_prefix(seconds);
        }
        out.extend_from_slice(prefix);
    });
    fixed(out, since_epoch.subsec_micros(), 6);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for seconds since the epoch (the civil calendar from
/// days since 1970-01-01, after Howard Hinnant's `civil_from_days`).
fn second_prefix(seconds: u64) -> [u8; 20] {
    let days = (seconds / 86_400) as i64;
    let second_of_day = (seconds % 86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = (year_of_era + era * 400 + i64::from(month <= 2)) as u32;
    let mut text = Vec::with_capacity(20);
    fixed(&mut text, year, 4);
    text.push(b'-');
    fixed(&mut text, month, 2);
    text.push(b'-');
    fixed(&mut text, day, 2);
    text.push(b'T');
    fixed(&mut text, second_of_day / 3600, 2);
    text.push(b':');
    fixed(&mut text, second_of_day / 60 % 60, 2);
    text.push(b':');
    fixed(&mut text, second_of_day % 60, 2);
    text.push(b'.');
    let mut prefix = [0; 20];
    prefix.copy_from_slice(&text);
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64, micros: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros)
    }

    fn stamp(time: SystemTime) -> String {
        let mut out = Vec::new();
        timestamp(&mut out, time);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn timestamps_are_rfc_3339_utc_with_microseconds() {
        assert_eq!(stamp(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(stamp(at(951_782_400, 7)), "2000-02-29T00:00:00.000007Z");
        assert_eq!(
            stamp(at(1_796_036_703, 123_456)),
            "2026-11-30T11:05:03.123456Z"
        );
        assert_eq!(
            stamp(at(4_102_444_799, 999_999)),
            "2099-12-31T23:59:59.999999Z"
        );
        // Every day of a leap year and its neighbours agrees with the time crate's calendar.
        for day in (10_956..12_100).step_by(7) {
            let seconds = day * 86_400 + 3_723;
            let expected = time::OffsetDateTime::from_unix_timestamp(seconds as i64).unwrap();
            let text = stamp(at(seconds, 0));
            assert_eq!(&text[..10], expected.date().to_string(), "day {day}");
            assert_eq!(&text[11..19], "01:02:03");
        }
    }

    #[test]
    fn the_line_is_json_with_every_field() {
        let record = Record {
            method: "GET",
            route: "/{*path}",
            path: "/a\"b\\c\u{1}",
            status: 200,
            latency: Duration::from_micros(1_902),
            cache: "HIT",
            request_id: "trace-me-42",
        };
        let mut out = Vec::new();
        json_line(&mut out, &record, at(1_796_036_703, 5));
        assert_eq!(out.last(), Some(&b'\n'));
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["timestamp"], "2026-11-30T11:05:03.000005Z");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "access");
        assert_eq!(line["message"], "request");
        assert_eq!(line["route"], "/{*path}");
        assert_eq!(line["path"], "/a\"b\\c\u{1}");
        assert_eq!(line["status"], 200);
        assert_eq!(line["latency_ms"], 1.902);
        assert_eq!(line["cache"], "HIT");
        assert_eq!(line["request_id"], "trace-me-42");
    }
}
