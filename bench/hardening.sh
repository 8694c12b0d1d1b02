#!/usr/bin/env bash
# The six cases of issue 11 against a real stack: api-rest on a throwaway
# PostgreSQL loaded by postgres/init-script.sh, api-cache on a throwaway Redis.
# For each: the status, the time, and what it cost api-cache (RSS) and Redis
# (used_memory).
#
#   bench/hardening.sh
#
# API_CACHE_BIN / API_REST_BIN measure other builds, e.g. those before the fix:
#   git worktree add /tmp/before <commit> && cargo build --release --manifest-path /tmp/before/Cargo.toml
#   API_CACHE_BIN=/tmp/before/target/release/api-cache API_REST_BIN=/tmp/before/target/release/api-rest bench/hardening.sh
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

ensure_servers
ensure_bench_tools
cargo build --release --locked -q -p api-rest -p api-cache -p bench-origin
cache_bin="${API_CACHE_BIN:-target/release/api-cache}"
rest_bin="${API_REST_BIN:-target/release/api-rest}"
bench_workdir
trap 'pg_down "$BENCH_DIR"; bench_cleanup' EXIT

pg_port="$(free_port)" redis_port="$(free_port)"
rest_port="$(free_port)" rest_admin="$(free_port)"
cache_port="$(free_port)" cache_admin="$(free_port)"
pg_up "$BENCH_DIR" "$pg_port"
pg_init "$BENCH_DIR" "$pg_port" POSTGRES_API_PASSWORD=bench >"$BENCH_DIR/init.log" 2>&1 \
  || { cat "$BENCH_DIR/init.log" >&2; exit 1; }
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
  --logfile "$BENCH_DIR/redis.log" &
BENCH_PIDS+=($!)
env POSTGRES_HOST=127.0.0.1 POSTGRES_PORT="$pg_port" POSTGRES_API_PASSWORD=bench \
  API_REST_PORT="$rest_port" API_REST_ADMIN_PORT="$rest_admin" BIND_ADDRESS=127.0.0.1 \
  RUST_LOG=warn "$rest_bin" >"$BENCH_DIR/api-rest.log" 2>&1 &
BENCH_PIDS+=($!)
env API_CACHE_PORT="$cache_port" API_CACHE_ADMIN_PORT="$cache_admin" BIND_ADDRESS=127.0.0.1 \
  REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" BACKEND_HOST=127.0.0.1 \
  BACKEND_PORT="$rest_port" BACKEND_ADMIN_PORT="$rest_admin" RUST_LOG=warn \
  "$cache_bin" >"$BENCH_DIR/api-cache.log" 2>&1 &
cache_pid=$!
BENCH_PIDS+=("$cache_pid")
wait_http "http://127.0.0.1:$cache_port/healthz"
curl -s -o /dev/null "http://127.0.0.1:$cache_port/air_quality?limit=3"

raw() { python3 bench/raw_http.py "$@"; }
rss_kib() { ps -o rss= -p "$cache_pid" | tr -d ' '; }
redis_bytes() { redis-cli -p "$1" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }'; }
redis_keys() { redis-cli -p "$1" --scan --pattern "$2" | wc -l; }

# settle: until Redis' memory stops changing (writes follow the response), 10 s at most.
settle() {
  local last now _
  last="$(redis_bytes "$redis_port")"
  for _ in $(seq 20); do
    sleep 0.5
    now="$(redis_bytes "$redis_port")"
    [ "$now" = "$last" ] && return 0
    last="$now"
  done
}

# row CASE RESULT: one line of the table, with what the case cost since `mark`.
mark() { rss_before="$(rss_kib)"; redis_before="$(redis_bytes "$redis_port")"; }
row() {
  settle
  awk -v c="$1" -v r="$2" -v a="$rss_before" -v b="$(rss_kib)" \
      -v m="$redis_before" -v n="$(redis_bytes "$redis_port")" \
    'BEGIN { printf "| %s | %s | %+.1f MiB | %+.2f MB |\n", c, r, (b - a) / 1024, (n - m) / 1e6 }'
}

echo "| case | answer (status, seconds) | api-cache RSS | Redis used_memory |"
echo "|---|---|---|---|"

mark
dots="$(printf '/.%.0s' $(seq 8000))"
row "1. 8,000 \`/.\` segments (16 KB target)" "$(raw "$cache_port" "$dots/air_quality?limit=3")"

mark
metrics="$(raw "$cache_port" /x/../metrics --body-contains api_rest_)"
changes="$(raw "$cache_port" /x/../changes --wait 5)"
row "2. \`/x/../metrics\` (api-rest's metrics in it?); \`/x/../changes\`" "$metrics; $changes"

mark
row "3. \`?from=9999-12-31T23:00:00-05:00\`" \
  "$(raw "$cache_port" '/air_quality?from=9999-12-31T23:00:00-05:00')"

mark
row "4. a head never finished (slow loris), waited up to 15 s" \
  "$(raw "$cache_port" /healthz --unfinished --wait 15)"

mark
ids="$(seq -f 'zz_%g' -s, 100)"
answer="$(raw "$cache_port" "/air_quality?id_entity=${ids%,}")"
sleep 0.5
row "5. 100 unknown \`id_entity\` (keys naming them)" "$answer; $(redis_keys "$redis_port" '*zz_*') keys"

# 6: 30 revalidations of an entry whose origin takes 1.5 s, each abandoned
# after 0.2 s, through an api-cache in front of the synthetic origin.
origin_port="$(free_port)"
start_origin "$origin_port"
lock_cache_port="$(free_port)"
start_api_cache "$lock_cache_port" "$origin_port"
slow="http://127.0.0.1:$lock_cache_port/air_quality?rows=10&delay_ms=1500"
curl -s -o /dev/null "$slow"
for _ in $(seq 30); do curl -s -o /dev/null -m 0.2 -H 'Cache-Control: no-cache' "$slow" || true; done
sleep 1
locks="$(redis-cli -p "$API_CACHE_REDIS_PORT" --scan --pattern '*:lock')"
ttl=""
for lock in $locks; do ttl="$ttl $(redis-cli -p "$API_CACHE_REDIS_PORT" pttl "$lock") ms"; done
echo "| 6. 30 abandoned revalidations (origin 1.5 s): fill locks left 1 s later | $(echo "$locks" | grep -c . || true) locks${ttl:+, living$ttl} | | |"
