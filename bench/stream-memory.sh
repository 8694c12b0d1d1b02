#!/usr/bin/env bash
# api-rest's memory while it streams /air_quality in each format (JSON, CSV,
# NDJSON): the committed data (8,784 rows) against a generated set (1,000,000
# rows by default). If rows were gathered in memory, the peak would grow with
# the row count; streamed, it stays flat.
#
#   bench/stream-memory.sh [ROWS]
#
# Prints, per data set and format: rows, bytes sent, seconds, and api-rest's
# resident memory before the request and at its peak (VmHWM from /proc; a
# fresh api-rest per line, so each peak is that request's).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
rows="${1:-1000000}"

ensure_servers
cargo build --release --locked -q -p api-rest -p datagen
work="$(mktemp -d /tmp/aq-bench.XXXXXX)"
rest_pid=""
cleanup() {
  [ -n "$rest_pid" ] && kill "$rest_pid" 2>/dev/null && wait "$rest_pid" 2>/dev/null
  pg_down "$work"
  rm -rf "$work"
}
trap cleanup EXIT

pg_port="$(free_port)"
pg_up "$work" "$pg_port"
target/release/aq-datagen --rows "$rows" > "$work/large.csv" 2>/dev/null
chmod 644 "$work/large.csv"
for db in small large; do
  as_postgres "$(pg_bin_dir)/psql" -q -h "$work" -p "$pg_port" -U postgres -c "CREATE DATABASE $db" postgres
done
pg_init "$work" "$pg_port" POSTGRES_DB=small POSTGRES_API_PASSWORD=bench >/dev/null 2>&1
pg_init "$work" "$pg_port" POSTGRES_DB=large POSTGRES_API_PASSWORD=bench AIR_QUALITY_CSV="$work/large.csv" >/dev/null 2>&1

kib() { awk -v k="$1" '/^'"$1"':/ {print $2}' "/proc/$2/status"; }
printf '%-7s %-7s %10s %12s %8s %14s %14s\n' data format rows bytes seconds "rss-before-MiB" "peak-rss-MiB"
for db in small large; do
for format in json csv ndjson; do
  port="$(free_port)"
  API_REST_PORT="$port" POSTGRES_HOST=127.0.0.1 POSTGRES_PORT="$pg_port" POSTGRES_DB="$db" \
    POSTGRES_API_PASSWORD=bench LOG_FORMAT=json RUST_LOG=warn target/release/api-rest &
  rest_pid=$!
  for _ in $(seq 100); do API_REST_PORT="$port" target/release/api-rest healthcheck 2>/dev/null && break; sleep 0.1; done
  curl -sf "localhost:$port/air_quality?limit=10" >/dev/null   # warm the pool
  before="$(kib VmRSS "$rest_pid")"
  read -r bytes seconds < <(curl -sf -o /dev/null -w '%{size_download} %{time_total}\n' "localhost:$port/air_quality?format=$format")
  peak="$(kib VmHWM "$rest_pid")"
  count="$(as_postgres "$(pg_bin_dir)/psql" -tA -h "$work" -p "$pg_port" -U postgres -d "$db" -c 'SELECT count(*) FROM api.air_quality_measurements')"
  awk -v d="$db" -v f="$format" -v c="$count" -v b="$bytes" -v s="$seconds" -v r="$before" -v p="$peak" \
    'BEGIN { printf "%-7s %-7s %10s %12s %8s %14.1f %14.1f\n", d, f, c, b, s, r / 1024, p / 1024 }'
  kill "$rest_pid"; wait "$rest_pid" 2>/dev/null || true; rest_pid=""
done
done
