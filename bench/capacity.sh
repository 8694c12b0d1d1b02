#!/usr/bin/env bash
# The figures of the capacity model (docs/scaling.md): one api-cache and one
# api-rest on this machine, the committed data, wrk with 2 threads and 32
# connections for 5 s per line, clients on the same 2 cores.
#
#   bench/capacity.sh
#
# Per line: requests/s through api-cache at a hit ratio (every tenth request
# a new URL for 90 %, every other one for 50 %), and api-rest alone on the
# same requests (every one an origin query). Redis commands (INFO
# commandstats) and PostgreSQL transactions (pg_stat_database) are counted
# over the run and divided by the requests.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ensure_servers
ensure_bench_tools
cargo build --release --locked -q -p api-rest -p api-cache
bench_workdir
work="$BENCH_DIR"
trap 'pg_down "$work"; bench_cleanup' EXIT

pg_port="$(free_port)" rest_port="$(free_port)" rest_admin="$(free_port)" cache_port="$(free_port)"
pg_up "$work" "$pg_port"
pg_init "$work" "$pg_port" POSTGRES_API_PASSWORD=bench >"$work/init.log" 2>&1 || { cat "$work/init.log" >&2; exit 1; }
start_api_rest "$pg_port" "$rest_port" "$rest_admin" LOG_FORMAT=json
start_api_cache "$cache_port" "$rest_port" BACKEND_ADMIN_PORT="$rest_admin" BACKEND_CHANGES_PATH=/changes

# A hot URL (one station, one day: 24 rows, 3.5 KB) and, every `every`th
# request, a new one (the same day, a random end second: a miss).
cat > "$work/mix.lua" <<'LUA'
local every = tonumber(os.getenv("EVERY") or "0")
local n = 0
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
request = function()
  n = n + 1
  if every > 0 and n % every == 0 then
    local s = math.random(0, 86399)
    local to = string.format("2016-10-02T%02d:%02d:%02d", math.floor(s / 3600), math.floor(s / 60) % 60, s % 60)
    return wrk.format("GET", "/air_quality?id_entity=aq_jaen&from=2016-10-01&to=" .. to)
  end
  return wrk.format("GET", "/air_quality?id_entity=aq_jaen&from=2016-10-01&to=2016-10-02")
end
LUA

redis_calls() {
  redis-cli -p "$API_CACHE_REDIS_PORT" info commandstats |
    awk -F'[:=,]' '/^cmdstat_/ && $1 !~ /info|ping/ { n += $3 } END { print n + 0 }'
}
pg_xacts() {
  as_postgres "$(pg_bin_dir)/psql" -qAt -h "$work" -p "$pg_port" -U postgres -d postgres \
    -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'postgres'"
}
run() {  # run URL EVERY -> "requests req/s"
  EVERY="$2" wrk -t2 -c32 -d5s -s "$work/mix.lua" "$1" |
    awk '/requests in/ { r = $1 } /Requests\/sec/ { s = $2 } END { print r, s }'
}

curl -s -o /dev/null "http://127.0.0.1:$cache_port/air_quality?id_entity=aq_jaen&from=2016-10-01&to=2016-10-02"
echo "| front | misses | req/s | Redis commands per request | PostgreSQL transactions per request |"
echo "|---|---|---|---|---|"
for line in "api-cache 0" "api-cache 10" "api-cache 2" "api-rest 1"; do
  read -r front every <<< "$line"
  case "$front" in
    api-cache) url="http://127.0.0.1:$cache_port" ;;
    api-rest) url="http://127.0.0.1:$rest_port" ;;
  esac
  redis_before="$(redis_calls)" pg_before="$(pg_xacts)"
  read -r requests rate < <(run "$url" "$every")
  redis_after="$(redis_calls)" pg_after="$(pg_xacts)"
  share=$([ "$every" = 0 ] && echo "none" || echo "1 in $every")
  [ "$front" = api-rest ] && share="all (no cache)"
  awk -v f="$front" -v m="$share" -v q="$requests" -v r="$rate" \
      -v rd="$((redis_after - redis_before))" -v pd="$((pg_after - pg_before))" \
      'BEGIN { printf "| %s | %s | %.0f | %.2f | %.2f |\n", f, m, r, rd / q, pd / q }'
done
echo "api-cache peak RSS: $(peak_rss_mib "$API_CACHE_PID") MiB"
