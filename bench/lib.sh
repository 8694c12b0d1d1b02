# shellcheck shell=bash
# Shared by the benchmarks in this folder: the fronts a user could put in front
# of an origin (api-cache, nginx proxy_cache, Varnish), each started as a plain
# process in a temporary directory and stopped by PID. Source it; do not run it.
#
# Every front keeps each 200 for 30 s, as the issue that asked for the
# comparison set out: nginx `proxy_cache_valid 200 30s` with `proxy_cache_lock`,
# Varnish `beresp.ttl = 30s` with 60 s of grace, api-cache its defaults
# (CACHE_TTL_SECONDS=30 for an origin that declares nothing).

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

# Installs what the benchmarks run when it is missing (Debian packages).
ensure_bench_tools() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v wrk >/dev/null 2>&1 || missing+=(wrk)
  command -v nginx >/dev/null 2>&1 || missing+=(nginx-light)
  command -v varnishd >/dev/null 2>&1 || missing+=(varnish)
  command -v gcc >/dev/null 2>&1 || missing+=(gcc)   # Varnish compiles its VCL
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} with apt-get" >&2
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# bench_workdir: a temporary directory, removed (with every process started by
# the functions below) when the script exits.
BENCH_PIDS=()
bench_workdir() {
  BENCH_DIR="$(mktemp -d /tmp/aq-bench.XXXXXX)"
  chmod 755 "$BENCH_DIR"   # Varnish's workers run as its own user
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${BENCH_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$BENCH_DIR"
}

# wait_http URL: until it answers (10 s at most).
wait_http() {
  local _
  for _ in $(seq 200); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "nothing answers at $1" >&2
  return 1
}

# start_origin PORT: the synthetic origin (bench/origin).
start_origin() {
  target/release/aq-bench-origin --port "$1" >"$BENCH_DIR/origin.log" 2>&1 &
  BENCH_PIDS+=($!)
  wait_http "http://127.0.0.1:$1/_origin/requests"
}

# origin_requests PORT: row requests the origin has answered so far.
origin_requests() {
  curl -s "http://127.0.0.1:$1/_origin/requests"
}

# start_api_cache PORT ORIGIN_PORT [VAR=value ...]: api-cache at its defaults
# (JSON access log on, gzip storage) with a Redis of its own; its log goes to a
# file, as a container runtime's would. Sets API_CACHE_PID and
# API_CACHE_REDIS_PORT. API_CACHE_BIN runs
# another build (e.g. the one before a change) instead of target/release/api-cache.
start_api_cache() {
  local port="$1" origin="$2" redis_port
  shift 2
  redis_port="$(free_port)"
  export API_CACHE_REDIS_PORT="$redis_port"   # read by the scripts that source this
  redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$BENCH_DIR/redis-$port.log" &
  BENCH_PIDS+=($!)
  env API_CACHE_PORT="$port" API_CACHE_ADMIN_PORT="$(free_port)" BIND_ADDRESS=127.0.0.1 REDIS_HOST=127.0.0.1 REDIS_PORT="$redis_port" \
    BACKEND_HOST=127.0.0.1 BACKEND_PORT="$origin" BACKEND_CHANGES_PATH="" \
    "$@" "${API_CACHE_BIN:-target/release/api-cache}" >"$BENCH_DIR/api-cache-$port.log" 2>&1 &
  API_CACHE_PID=$!
  BENCH_PIDS+=("$API_CACHE_PID")
  wait_http "http://127.0.0.1:$port/healthz"
}

# nginx_config PORT ORIGIN_PORT [extra main-context lines]: a proxy_cache
# front, plus /static/ serving files from $BENCH_DIR/static (the ceiling: no
# proxying at all).
nginx_config() {
  local port="$1" origin="$2" main="${3:-}" dir="$BENCH_DIR/nginx-$1"
  mkdir -p "$dir/cache" "$dir/temp" "$BENCH_DIR/static"
  cat >"$dir/nginx.conf" <<CONF
$main
daemon off;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $dir/temp/body;
  proxy_temp_path $dir/temp/proxy;
  fastcgi_temp_path $dir/temp/fastcgi;
  uwsgi_temp_path $dir/temp/uwsgi;
  scgi_temp_path $dir/temp/scgi;
  proxy_cache_path $dir/cache levels=1:2 keys_zone=aq:16m max_size=2g inactive=10m use_temp_path=off;
  upstream origin { server 127.0.0.1:$origin; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    location /static/ { alias $BENCH_DIR/static/; default_type application/json; }
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache aq;
      proxy_cache_valid 200 30s;
      proxy_cache_lock on;
      add_header X-Cache \$upstream_cache_status;
    }
  }
}
CONF
  echo "$dir/nginx.conf"
}

# start_nginx PORT ORIGIN_PORT
start_nginx() {
  local conf
  conf="$(nginx_config "$1" "$2")"
  nginx -c "$conf" -e "$BENCH_DIR/nginx-$1/error.log" &
  BENCH_PIDS+=($!)
  wait_http "http://127.0.0.1:$1/static/"
}

# start_varnish PORT ORIGIN_PORT
start_varnish() {
  local port="$1" origin="$2" dir="$BENCH_DIR/varnish-$1"
  mkdir -p "$dir"
  cat >"$dir/default.vcl" <<VCL
vcl 4.1;
backend origin { .host = "127.0.0.1"; .port = "$origin"; }
sub vcl_backend_response {
  set beresp.ttl = 30s;
  set beresp.grace = 60s;
}
sub vcl_deliver {
  if (obj.hits > 0) { set resp.http.X-Cache = "HIT"; } else { set resp.http.X-Cache = "MISS"; }
}
VCL
  chmod -R a+rX "$dir"
  varnishd -F -a "127.0.0.1:$port" -f "$dir/default.vcl" -s malloc,2g -n "$dir/work" \
    >"$dir/varnishd.log" 2>&1 &
  BENCH_PIDS+=($!)
  wait_http "http://127.0.0.1:$port/_origin/requests"
}

# peak_rss_mib PID: the process' peak resident memory (VmHWM), in MiB.
peak_rss_mib() {
  awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"
}

# load_generated DIR PORT STATIONS DAYS: a throwaway PostgreSQL in DIR on PORT
# (pg_up) loaded by postgres/init-script.sh with STATIONS generated stations
# and DAYS of their hourly rows. Sets LOADED_ROWS and LOAD_SECONDS.
load_generated() {
  local dir="$1" port="$2" stations="$3" days="$4" started
  pg_up "$dir" "$port"
  target/release/aq-datagen stations --stations "$stations" > "$dir/stations.csv" 2>/dev/null
  target/release/aq-datagen --stations "$stations" --days "$days" > "$dir/rows.csv" 2>/dev/null
  chmod 644 "$dir"/*.csv
  export LOADED_ROWS=$(( $(wc -l < "$dir/rows.csv") - 1 ))
  started=$(date +%s)
  pg_init "$dir" "$port" POSTGRES_API_PASSWORD=bench AIR_QUALITY_CSV="$dir/rows.csv" \
    AIR_QUALITY_STATIONS_CSV="$dir/stations.csv" >"$dir/init.log" 2>&1 \
    || { cat "$dir/init.log" >&2; return 1; }
  export LOAD_SECONDS=$(( $(date +%s) - started ))
  rm -f "$dir/rows.csv"
}

# start_api_rest PG_PORT PORT ADMIN_PORT [VAR=value ...]: the release api-rest
# on that database (API password "bench"), returning once /readyz says 200.
# Sets API_REST_PID; stop_api_rest stops it.
start_api_rest() {
  local pg_port="$1" port="$2" admin="$3" _
  shift 3
  env POSTGRES_HOST=127.0.0.1 POSTGRES_PORT="$pg_port" POSTGRES_API_PASSWORD=bench \
    API_REST_PORT="$port" API_REST_ADMIN_PORT="$admin" BIND_ADDRESS=127.0.0.1 RUST_LOG=warn \
    "$@" target/release/api-rest >>"$BENCH_DIR/api-rest.log" 2>&1 &
  API_REST_PID=$!
  BENCH_PIDS+=("$API_REST_PID")
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$admin/readyz" && return 0
    sleep 0.1
  done
  echo "api-rest did not become ready" >&2
  return 1
}

stop_api_rest() {
  kill "$API_REST_PID" 2>/dev/null || true
  wait "$API_REST_PID" 2>/dev/null || true
}
