#!/usr/bin/env bash
# Instructions per cache hit, counted by valgrind's callgrind: the same figure
# for the same binary and inputs however busy the machine is.
#
#   bench/callgrind-hit.sh [--rows 10] [--hits 1000] [--gzip]
#
# api-cache (at its defaults: JSON access log on, gzip storage) and, for
# reference, nginx proxy_cache (one process) each run twice under callgrind: one
# miss then 200 hits, and one miss then 200 + HITS hits, from one keep-alive
# connection; the counters are zeroed after the miss (callgrind_control -z),
# so start-up (whose clock calibration varies from run to run) and the miss
# are not counted. Per hit = (second total - first total) / HITS. Then the top
# symbols of api-cache's longer run.
# --gzip: the client sends Accept-Encoding: gzip. API_CACHE_BIN measures
# another build (e.g. the one before a change).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

rows=10 hits=1000 client=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --hits) hits="$2"; shift 2 ;;
    --gzip) client=(-H "Accept-Encoding: gzip"); shift ;;
    *) sed -n '2,17p' "$0" >&2; exit 2 ;;
  esac
done

ensure_bench_tools
cargo build --release --locked -q -p api-cache -p bench-origin
bench_workdir
origin_port="$(free_port)"
start_origin "$origin_port"
path="/air_quality?rows=$rows"

# requests PORT COUNT: COUNT sequential GETs on one connection.
requests() {
  : >"$BENCH_DIR/curl.conf"
  for _ in $(seq "$2"); do
    printf 'url = "http://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "$1" "$path" >>"$BENCH_DIR/curl.conf"
  done
  curl -sf "${client[@]}" -K "$BENCH_DIR/curl.conf"
}

# total FILE: the instruction count callgrind recorded.
total() {
  awk -F': ' '$1 == "totals" || $1 == "summary" { print $2; exit }' "$1"
}

# run_api_cache HITS OUT: api-cache under callgrind for one miss and HITS hits.
run_api_cache() {
  local port redis_port pid
  port="$(free_port)"; redis_port="$(free_port)"
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$BENCH_DIR/redis.log" &
  BENCH_PIDS+=($!)
  env API_CACHE_PORT="$port" API_CACHE_ADMIN_PORT="$(free_port)" BIND_ADDRESS=127.0.0.1 REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" \
    BACKEND_HOST=127.0.0.1 BACKEND_PORT="$origin_port" BACKEND_CHANGES_PATH="" \
    valgrind --tool=callgrind --callgrind-out-file="$2" \
    "${API_CACHE_BIN:-target/release/api-cache}" >"$BENCH_DIR/api-cache.log" 2>"$BENCH_DIR/valgrind.log" &
  pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  requests "$port" 1
  sleep 1   # the background write to Redis
  callgrind_control -z "$pid" >/dev/null 2>&1
  requests "$port" "$1"
  kill -TERM "$pid"; wait "$pid" || true
}

# run_nginx HITS OUT: nginx (master_process off) under callgrind, the same way.
run_nginx() {
  local port conf pid
  port="$(free_port)"
  conf="$(nginx_config "$port" "$origin_port" "master_process off;")"
  valgrind --tool=callgrind --callgrind-out-file="$2" nginx -c "$conf" -e "$BENCH_DIR/nginx-$port/error.log" \
    2>"$BENCH_DIR/valgrind-nginx.log" &
  pid=$!
  for _ in $(seq 600); do curl -s -o /dev/null "http://127.0.0.1:$port/static/" && break; sleep 0.1; done
  requests "$port" 1
  callgrind_control -z "$pid" >/dev/null 2>&1
  requests "$port" "$1"
  kill -QUIT "$pid"; wait "$pid" || true
}

echo "| front | instructions per hit ($rows rows, $hits hits${client[*]:+, ${client[1]}}) |"
echo "|---|---|"
for front in api-cache nginx; do
  "run_${front/-/_}" 200 "$BENCH_DIR/$front-short.out"
  "run_${front/-/_}" $((200 + hits)) "$BENCH_DIR/$front-long.out"
  awk -v a="$(total "$BENCH_DIR/$front-short.out")" -v b="$(total "$BENCH_DIR/$front-long.out")" \
    -v n="$hits" -v f="$front" 'BEGIN { printf "| %s | %d |\n", f, (b - a) / n }'
done
echo
echo "api-cache, top symbols of the run with $((200 + hits)) hits (self cost):"
callgrind_annotate --inclusive=no "$BENCH_DIR/api-cache-long.out" >"$BENCH_DIR/annotated.txt" 2>/dev/null
awk '/file:function/ { on = 1; next } on && NF && n++ < 25 { print }' "$BENCH_DIR/annotated.txt"
# CALLGRIND_KEEP=DIR keeps the profiles (callgrind_annotate, kcachegrind).
if [ -n "${CALLGRIND_KEEP:-}" ]; then cp "$BENCH_DIR"/*.out "$CALLGRIND_KEEP/"; fi
