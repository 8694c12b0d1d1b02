#!/usr/bin/env bash
# shellcheck disable=SC2016  # the backquotes in the table are Markdown, not commands
# Monthly partitions against one unpartitioned table, on the same 10 million
# rows (100 stations, hourly, 11.4 years, generated): api-rest asked directly,
# once with schema `api` (partitioned, as postgres/init-script.sh makes it) and
# once with schema `flat` (the same rows in one table with the same indexes,
# as the script made it before).
#
#   bench/partitions.sh [STATIONS] [DAYS]      # default 100 4167: 10,000,800 rows
#
# Warm figures (the table just loaded and read once): the median of 10 for the
# short requests; the full stream (every row as JSON) once, with its rows/s.
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
sql() { as_postgres "$(pg_bin_dir)/psql" -qAt -v ON_ERROR_STOP=1 -h "$work" -p "$pg_port" -U postgres -d postgres "$@"; }
load_generated "$work" "$pg_port" "$stations" "$days"
rows="$LOADED_ROWS"
echo "loaded $rows rows into monthly partitions with postgres/init-script.sh in $LOAD_SECONDS s"

started=$(date +%s)
sql <<'SQL'
CREATE SCHEMA flat;
CREATE TABLE flat.stations (LIKE api.stations INCLUDING ALL);
INSERT INTO flat.stations SELECT * FROM api.stations;
CREATE TABLE flat.air_quality_data_version (LIKE api.air_quality_data_version INCLUDING ALL);
INSERT INTO flat.air_quality_data_version SELECT * FROM api.air_quality_data_version;
CREATE TABLE flat.air_quality_latest (LIKE api.air_quality_latest INCLUDING ALL);
INSERT INTO flat.air_quality_latest SELECT * FROM api.air_quality_latest;
CREATE TABLE flat.air_quality_spans (LIKE api.air_quality_spans INCLUDING ALL);
INSERT INTO flat.air_quality_spans SELECT * FROM api.air_quality_spans;
CREATE TABLE flat.air_quality_measurements (LIKE api.air_quality_measurements INCLUDING DEFAULTS);
INSERT INTO flat.air_quality_measurements SELECT * FROM api.air_quality_measurements ORDER BY time_instant, id_entity;
ALTER TABLE flat.air_quality_measurements ADD CONSTRAINT air_quality_measurements_pkey
  PRIMARY KEY (id_entity, time_instant) INCLUDE (so2, no2, co, o3, pm10, pm2_5);
CREATE INDEX ON flat.air_quality_measurements (time_instant, id_entity);
GRANT USAGE ON SCHEMA flat TO api;
GRANT SELECT ON ALL TABLES IN SCHEMA flat TO api;
VACUUM (ANALYZE) flat.air_quality_measurements;
ANALYZE flat.stations;
ANALYZE flat.air_quality_latest;
SQL
echo "copied them into one unpartitioned table (schema flat) in $(( $(date +%s) - started )) s"
echo
sql -c "SELECT 'api (partitioned): ' || count(*) || ' partitions, ' || pg_size_pretty(sum(pg_total_relation_size(inhrelid)))
          FROM pg_inherits WHERE inhparent = 'api.air_quality_measurements'::regclass"
sql -c "SELECT 'flat: ' || pg_size_pretty(pg_total_relation_size('flat.air_quality_measurements'))"
sql -c "SELECT 'time index (B-tree), all partitions: ' || pg_size_pretty(sum(pg_relation_size(i.indexrelid)))
          FROM pg_inherits p JOIN pg_index i ON i.indrelid = p.inhrelid
          JOIN pg_class c ON c.oid = i.indexrelid
         WHERE p.inhparent = 'api.air_quality_measurements'::regclass AND c.relname LIKE '%time_instant%'"
sql -c "CREATE INDEX flat_time_brin ON flat.air_quality_measurements USING brin (time_instant)"
sql -c "SELECT 'a BRIN on time_instant instead (flat): ' || pg_size_pretty(pg_relation_size('flat.flat_time_brin'))"
sql -c "DROP INDEX flat.flat_time_brin"

start_rest() {
  start_api_rest "$pg_port" "$rest_port" "$admin_port" POSTGRES_API_SCHEMA="$1" POSTGRES_STATEMENT_TIMEOUT_SECONDS=600
}
seconds() { curl -sf -o /dev/null -w '%{time_total}' "http://127.0.0.1:$rest_port$1"; }
median_ms() {
  local _
  seconds "$1" >/dev/null
  for _ in $(seq 10); do seconds "$1"; echo; done | sort -n | awk '{ v[NR] = $1 } END { printf "%.1f", (v[5] + v[6]) / 2 * 1000 }'
}

station=aq_jaen
month="id_entity=$station&from=2020-03-01T00:00:00&to=2020-04-01T00:00:00"
year="interval=day&id_entity=$station&from=2020-01-01T00:00:00%2B01:00&to=2021-01-01T00:00:00%2B01:00"
declare -A result
for schema in flat api; do
  start_rest "$schema"
  result[$schema,month]=$(median_ms "/air_quality?$month")
  result[$schema,latest]=$(median_ms "/air_quality/latest")
  result[$schema,daily]=$(median_ms "/air_quality/aggregates?$year")
  result[$schema,stations]=$(median_ms "/stations")
  result[$schema,stream]=$(seconds "/air_quality")
  stop_api_rest
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
echo
echo "| request ($rows rows, warm) | unpartitioned | partitioned | partitioned / unpartitioned |"
echo "|---|---|---|---|"
printf '| one station, one month: `/air_quality?%s` | %s ms | %s ms | %s |\n' "$month" \
  "${result[flat,month]}" "${result[api,month]}" "$(ratio "${result[flat,month]}" "${result[api,month]}")"
printf '| latest per station: `/air_quality/latest` | %s ms | %s ms | %s |\n' \
  "${result[flat,latest]}" "${result[api,latest]}" "$(ratio "${result[flat,latest]}" "${result[api,latest]}")"
printf '| daily aggregates of a year, one station | %s ms | %s ms | %s |\n' \
  "${result[flat,daily]}" "${result[api,daily]}" "$(ratio "${result[flat,daily]}" "${result[api,daily]}")"
printf '| all 100 stations with their first and last measurement: `/stations` | %s ms | %s ms | %s |\n' \
  "${result[flat,stations]}" "${result[api,stations]}" "$(ratio "${result[flat,stations]}" "${result[api,stations]}")"
for schema in flat api; do
  result[$schema,rate]=$(awk -v r="$rows" -v s="${result[$schema,stream]}" 'BEGIN { printf "%.0f", r / s }')
done
printf '| the full stream: `/air_quality` (JSON, every row) | %.1f s (%s rows/s) | %.1f s (%s rows/s) | %s |\n' \
  "${result[flat,stream]}" "${result[flat,rate]}" "${result[api,stream]}" "${result[api,rate]}" \
  "$(ratio "${result[flat,stream]}" "${result[api,stream]}")"
echo
echo "One station, one month (warm), partitioned:"
sql -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY OFF)
  SELECT * FROM api.air_quality_measurements WHERE id_entity = '$station'
   AND time_instant >= '2020-03-01' AND time_instant < '2020-04-01' ORDER BY time_instant, id_entity" | sed 's/^/    /'
echo "unpartitioned:"
sql -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, SUMMARY OFF)
  SELECT * FROM flat.air_quality_measurements WHERE id_entity = '$station'
   AND time_instant >= '2020-03-01' AND time_instant < '2020-04-01' ORDER BY time_instant, id_entity" | sed 's/^/    /'
