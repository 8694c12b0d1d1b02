#!/usr/bin/env bash
# What storing bodies gzip-compressed saves, for the full /air_quality response
# (the committed data, 8,784 rows): Redis memory of the entry and bytes on the
# wire, with CACHE_COMPRESSION=none (before) and gzip (after), in one run.
#
#   bench/compression.sh
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_servers
cargo build --release --locked -q -p api-rest -p api-cache
work="$(mktemp -d /tmp/aq-bench.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pg_down "$work"
  rm -rf "$work"
}
trap cleanup EXIT

pg_port="$(free_port)"; redis_port="$(free_port)"; rest_port="$(free_port)"
pg_up "$work" "$pg_port"
pg_init "$work" "$pg_port" POSTGRES_API_PASSWORD=bench >/dev/null 2>&1
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no \
  --logfile "$work/redis.log" & pids+=($!)
API_REST_PORT="$rest_port" POSTGRES_HOST=127.0.0.1 POSTGRES_PORT="$pg_port" POSTGRES_API_PASSWORD=bench \
  RESPONSE_MAX_AGE_SECONDS=600 RUST_LOG=warn target/release/api-rest & pids+=($!)

printf '%-12s %18s %18s %18s\n' compression "redis-entry-bytes" "wire-identity" "wire-gzip-client"
for mode in none gzip; do
  port="$(free_port)"
  API_CACHE_PORT="$port" REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" BACKEND_HOST=127.0.0.1 \
    BACKEND_PORT="$rest_port" CACHE_KEY_PREFIX="bench-$mode" CACHE_COMPRESSION="$mode" RUST_LOG=warn \
    target/release/api-cache & pids+=($!)
  for _ in $(seq 100); do API_CACHE_PORT="$port" target/release/api-cache healthcheck 2>/dev/null && break; sleep 0.1; done
  curl -sf -o /dev/null "localhost:$port/air_quality"                     # fill the cache
  identity=$(curl -sf -o /dev/null -w '%{size_download}' "localhost:$port/air_quality")
  gzip=$(curl -sf -o /dev/null -w '%{size_download}' -H 'Accept-Encoding: gzip' "localhost:$port/air_quality")
  key=$(redis-cli -p "$redis_port" --scan --pattern "bench-$mode:*" | head -n 1)
  memory=$(redis-cli -p "$redis_port" MEMORY USAGE "$key")
  printf '%-12s %18s %18s %18s\n' "$mode" "$memory" "$identity" "$gzip"
done
