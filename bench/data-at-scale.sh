#!/usr/bin/env bash
# The data endpoints on 10 million rows: 100 stations, hourly, 11.4 years
# (generated), loaded by postgres/init-script.sh into a throwaway PostgreSQL,
# and asked of api-rest directly (no cache in between).
#
#   bench/data-at-scale.sh [STATIONS] [DAYS]      # default 100 4167: 10,000,800 rows
#
# Each request is timed cold (PostgreSQL restarted and, when run as root, the
# kernel's page cache dropped: nothing of the table in memory) and warm
# (median of 10). For aggregates, the same figures computed by PostgreSQL
# itself in psql (date_trunc in the zone, percentile_cont), which is what a
# user without this API would run.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
stations="${1:-100}" days="${2:-4167}"

ensure_servers
cargo build --release --locked -q -p api-rest -p datagen
bench_workdir
work="$BENCH_DIR"
trap 'pg_down "$work"; bench_cleanup' EXIT

pg_port="$(free_port)" rest_port="$(free_port)" admin_port="$(free_port)"
load_generated "$work" "$pg_port" "$stations" "$days"
rows="$LOADED_ROWS"
echo "loaded $rows rows of $stations stations with postgres/init-script.sh in $LOAD_SECONDS s"

start_rest() { start_api_rest "$pg_port" "$rest_port" "$admin_port"; }

# cold: everything out of memory (PostgreSQL restarted, page cache dropped).
make_cold() {
  stop_api_rest
  as_postgres "$(pg_bin_dir)/pg_ctl" -D "$work/pgdata" -m fast -w restart >/dev/null
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
  start_rest
}

seconds() { curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$rest_port$1"; }
median_ms() {
  local _
  for _ in $(seq 10); do seconds "$1"; echo; done | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", (v[5] + v[6]) / 2 * 1000 }'
}
psql_ms() {
  as_postgres "$(pg_bin_dir)/psql" -q -h "$work" -p "$pg_port" -U postgres -d postgres \
    -c '\timing on' -c "$1" | awk '/^Time:/ { printf "%.1f", $2 }'
}

station=aq_jaen
year="from=2020-01-01T00:00:00%2B01:00&to=2021-01-01T00:00:00%2B01:00"
sql_year="SELECT date_trunc('day', time_instant AT TIME ZONE 'UTC', 'Europe/Madrid') AS day, count(*),
  avg(no2), min(no2), max(no2), percentile_cont(0.95) WITHIN GROUP (ORDER BY no2),
  avg(pm10), min(pm10), max(pm10), percentile_cont(0.95) WITHIN GROUP (ORDER BY pm10)
  FROM api.air_quality_measurements WHERE id_entity = '$station'
   AND time_instant >= '2019-12-31 23:00' AND time_instant < '2020-12-31 23:00' GROUP BY 1 ORDER BY 1"

start_rest
echo
echo "| request ($rows rows) | cold ms | warm ms (median of 10) |"
echo "|---|---|---|"
for path in \
  "/air_quality/aggregates?interval=day&id_entity=$station&$year" \
  "/air_quality/aggregates?interval=month&id_entity=$station&$year" \
  "/air_quality/latest" \
  "/air_quality/latest?id_entity=$station" \
  "/air_quality/aqi?standard=us-epa" \
  "/air_quality/aqi?standard=eaqi&id_entity=$station" \
  "/stations" \
  "/air_quality?id_entity=$station&from=2020-06-01&to=2020-06-02"; do
  make_cold
  cold=$(seconds "$path")
  # shellcheck disable=SC2016  # the backquotes are Markdown, not a command
  printf '| `%s` | %.1f | %s |\n' "$path" "$(awk -v s="$cold" 'BEGIN { print s * 1000 }')" "$(median_ms "$path")"
done
make_cold
cold=$(psql_ms "$sql_year")
warm=$(for _ in $(seq 10); do psql_ms "$sql_year"; echo; done | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", (v[5] + v[6]) / 2 }')
echo "| the same daily aggregates (no2, pm10 only) in SQL, psql | $cold | $warm |"
echo
echo "The aggregate query's plan (warm):"
as_postgres "$(pg_bin_dir)/psql" -q -h "$work" -p "$pg_port" -U postgres -d postgres -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
  SELECT time_instant, id_entity, so2, no2, co, o3, pm10, pm2_5 FROM api.air_quality_measurements
   WHERE id_entity = '$station' AND time_instant >= '2019-12-31 23:00' AND time_instant < '2020-12-31 23:00'
   ORDER BY time_instant" | sed 's/^/    /'
