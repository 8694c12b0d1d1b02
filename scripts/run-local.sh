#!/usr/bin/env bash
# Runs the whole stack on this machine, without Docker:
#
#   scripts/run-local.sh
#
# Installs PostgreSQL and Redis with apt-get when missing, starts a throwaway
# PostgreSQL (a fresh data directory, loaded by postgres/init-script.sh) and
# Redis on free ports, builds and starts api-rest and api-cache with the
# settings of environment.env, and prints the URL. Ctrl-C stops everything and
# removes the data. Empty passwords in environment.env are replaced by random
# ones for this throwaway run.
#
# Optional: PROFILE=debug (faster build), API_CACHE_PORT / API_REST_PORT (and
# API_CACHE_ADMIN_PORT / API_REST_ADMIN_PORT) to move the services off 8080 /
# 5000 (9090 / 9091).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
ensure_servers
ensure_docs_ui
PROFILE="${PROFILE:-release}"
cache_port_override="${API_CACHE_PORT:-}"
rest_port_override="${API_REST_PORT:-}"
cache_admin_override="${API_CACHE_ADMIN_PORT:-}"
rest_admin_override="${API_REST_ADMIN_PORT:-}"

set -a
source environment.env
set +a
random_secret() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }
[ -n "$POSTGRES_API_PASSWORD" ] || POSTGRES_API_PASSWORD="$(random_secret)"
[ -n "$REDIS_PASSWORD" ] || REDIS_PASSWORD="$(random_secret)"
API_CACHE_PORT="${cache_port_override:-$API_CACHE_PORT}"
API_REST_PORT="${rest_port_override:-$API_REST_PORT}"
API_CACHE_ADMIN_PORT="${cache_admin_override:-$API_CACHE_ADMIN_PORT}"
API_REST_ADMIN_PORT="${rest_admin_override:-$API_REST_ADMIN_PORT}"
BACKEND_ADMIN_PORT="$API_REST_ADMIN_PORT"
export POSTGRES_API_PASSWORD REDIS_PASSWORD API_CACHE_PORT API_REST_PORT
export API_CACHE_ADMIN_PORT API_REST_ADMIN_PORT BACKEND_ADMIN_PORT
POSTGRES_PORT="$(free_port)"
REDIS_PORT="$(free_port)"
export POSTGRES_HOST=127.0.0.1 POSTGRES_PORT REDIS_HOST=127.0.0.1 REDIS_PORT
export BACKEND_HOST=127.0.0.1 BACKEND_PORT="$API_REST_PORT"
export LOG_FORMAT="${LOCAL_LOG_FORMAT:-pretty}" SHUTDOWN_DRAIN_SECONDS=0

workdir="$(mktemp -d /tmp/air-quality-local.XXXXXX)"
pids=()
cleanup() {
  trap - EXIT INT TERM
  echo
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pg_down "$workdir"
  rm -rf "$workdir"
}
trap cleanup EXIT INT TERM

echo "==> building api-rest and api-cache ($PROFILE; the first build takes a few minutes)"
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -p api-rest -p api-cache
else
  cargo build --locked -p api-rest -p api-cache
fi
bin="target/$PROFILE"

echo "==> PostgreSQL on 127.0.0.1:$POSTGRES_PORT (data in $workdir)"
pg_up "$workdir" "$POSTGRES_PORT"
pg_init "$workdir" "$POSTGRES_PORT"

echo "==> Redis on 127.0.0.1:$REDIS_PORT"
printf 'requirepass %s\n' "$REDIS_PASSWORD" > "$workdir/redis.conf"
chmod 600 "$workdir/redis.conf"
redis-server "$workdir/redis.conf" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
  --appendonly no --dir "$workdir" --logfile "$workdir/redis.log" &
pids+=($!)

echo "==> api-rest on :$API_REST_PORT, api-cache on :$API_CACHE_PORT"
"$bin/api-rest" & pids+=($!)
"$bin/api-cache" & pids+=($!)
for _ in $(seq 100); do
  "$bin/api-cache" healthcheck 2>/dev/null && "$bin/api-rest" healthcheck 2>/dev/null && break
  sleep 0.1
done

cat <<MSG

The stack is up. Try:
  curl localhost:$API_CACHE_PORT/air_quality            # through the cache (X-Cache: MISS, then HIT)
  curl 'localhost:$API_CACHE_PORT/air_quality?id_entity=aq_jaen&from=2016-10-01&to=2016-10-02'
  curl localhost:$API_REST_PORT/                        # api-rest describes itself
  curl localhost:$API_CACHE_ADMIN_PORT/metrics                  # operators' endpoints: admin ports
Ctrl-C stops everything.

MSG
# Stop everything as soon as one process ends (or on Ctrl-C).
wait -n "${pids[@]}" || true
