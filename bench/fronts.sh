#!/usr/bin/env bash
# Cache hits per second: api-cache against the fronts a user could pick
# instead (nginx proxy_cache, Varnish), in one run, on this machine; nginx
# serving the same bytes from a file is the ceiling.
#
#   bench/fronts.sh                          # 10, 1,000 and 50,000 rows (about 1.4 KB, 145 KB, 7.2 MB)
#   bench/fronts.sh --rows 10 --duration 4   # one size, shorter runs
#   bench/fronts.sh stampede                 # 200 concurrent requests for a cold key, 1 s and 6 s origin
#
# Options: --rows N[,N...]  --duration SECONDS (8)  --rounds N (2; the median is shown)
#          --connections N (64; 16 for bodies over 1 MB)
#
# Every front holds each 200 for 30 s (see bench/lib.sh). Clients send no
# Accept-Encoding, as wrk, curl and most scripts don't; "api-cache gzip" is
# the same api-cache for clients that send `Accept-Encoding: gzip`. Before
# measuring, each front's second answer must be a hit carrying the origin's
# exact bytes. Output: a Markdown table (req/s, MB/s, p50/p99 latency, and
# api-cache's ratio to the better of nginx and Varnish) and api-cache's peak RSS.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

mode=table rows_list="10,1000,50000" duration=8 rounds=2 connections=""
while [ $# -gt 0 ]; do
  case "$1" in
    stampede) mode=stampede; shift ;;
    --rows) rows_list="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --connections) connections="$2"; shift 2 ;;
    *) sed -n '2,18p' "$0" >&2; exit 2 ;;
  esac
done

ensure_bench_tools
cargo build --release --locked -q -p api-cache -p bench-origin
bench_workdir

origin_port="$(free_port)"; nginx_port="$(free_port)"; varnish_port="$(free_port)"; cache_port="$(free_port)"
start_origin "$origin_port"
start_nginx "$nginx_port" "$origin_port"
start_varnish "$varnish_port" "$origin_port"
start_api_cache "$cache_port" "$origin_port"
declare -A front_port=([nginx]="$nginx_port" [varnish]="$varnish_port" [api-cache]="$cache_port")

# check_hit FRONT PATH: the second answer is a hit with the origin's bytes.
check_hit() {
  local url="http://127.0.0.1:${front_port[$1]}$2" expected got status
  expected="$(curl -sf "http://127.0.0.1:$origin_port$2" | sha256sum)"
  curl -sf -o /dev/null "$url"
  status="$(curl -sf -D - -o "$BENCH_DIR/body" "$url" | tr -d '\r' | awk -F': ' 'tolower($1) == "x-cache" { print $2 }')"
  got="$(sha256sum < "$BENCH_DIR/body")"
  if [ "$status" != HIT ] || [ "$got" != "$expected" ]; then
    echo "$1: the second answer for $2 is not a hit with the origin's bytes (X-Cache: $status)" >&2
    exit 1
  fi
}

# measure URL CONNECTIONS [wrk args]: "req/s MB/s p50 p99" of the median round (by req/s).
measure() {
  local url="$1" conns="$2" out
  shift 2
  for _ in $(seq "$rounds"); do
    out="$(wrk -t2 -c"$conns" -d"${duration}s" --latency "$@" "$url")"
    awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
      function mb(v) { if (v ~ /GB$/) return v * 1024; if (v ~ /MB$/) return v + 0; if (v ~ /KB$/) return v / 1024; return v / 1048576 }
      $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
      $1 == "Requests/sec:" { rps = $2 } $1 == "Transfer/sec:" { rate = mb($2) }
      END { printf "%.0f %.1f %.2f %.2f\n", rps, rate, p50, p99 }' <<<"$out"
  done | sort -n | awk -v n="$rounds" '{ line[NR] = $0 } END { print line[int((n + 1) / 2)] }'
}

table() {
  local rows path conns size result best ratio r mbs p50 p99
  echo "| body | front | req/s | MB/s | p50 ms | p99 ms | api-cache / best peer |"
  echo "|---|---|---|---|---|---|---|"
  for rows in ${rows_list//,/ }; do
    path="/air_quality?rows=$rows"
    curl -sf -o "$BENCH_DIR/static/rows-$rows.json" "http://127.0.0.1:$origin_port$path"
    size="$(stat -c %s "$BENCH_DIR/static/rows-$rows.json")"
    conns="${connections:-$([ "$size" -gt 1048576 ] && echo 16 || echo 64)}"
    for front in nginx varnish api-cache; do check_hit "$front" "$path"; done
    declare -A rps=()
    for front in static nginx varnish api-cache api-cache-gzip; do
      case "$front" in
        static) result="$(measure "http://127.0.0.1:$nginx_port/static/rows-$rows.json" "$conns")" ;;
        api-cache-gzip) result="$(measure "http://127.0.0.1:$cache_port$path" "$conns" -H 'Accept-Encoding: gzip')" ;;
        *) result="$(measure "http://127.0.0.1:${front_port[$front]}$path" "$conns")" ;;
      esac
      read -r r mbs p50 p99 <<<"$result"
      rps[$front]="$r"
      ratio=""
      if [[ "$front" == api-cache* ]]; then
        best=$(( rps[nginx] > rps[varnish] ? rps[nginx] : rps[varnish] ))
        ratio="$(awk -v a="$r" -v b="$best" 'BEGIN { printf "**%.2f**", a / b }')"
      fi
      echo "| $rows rows, $(numfmt --to=si --suffix=B "$size") (-c$conns) | $front | $r | $mbs | $p50 | $p99 | $ratio |"
    done
  done
  echo
  echo "api-cache peak RSS: $(peak_rss_mib "$API_CACHE_PID") MiB (CACHE_LOCAL_MAX_BYTES: 64 MiB)"
}

# One cold key, 200 concurrent clients, an origin taking DELAY ms: how many
# requests reach the origin, and how much later than the origin's answer the
# slowest client gets its own. "origin" is the same 200 requests sent to the
# origin directly (each waits its own DELAY): the client's own floor.
stampede() {
  local delay front path before after slowest
  front_port[origin]="$origin_port"
  echo "| origin latency | front | origin requests | slowest client, ms after the origin's latency |"
  echo "|---|---|---|---|"
  for delay in 1000 6000; do
    for front in origin nginx varnish api-cache; do
      path="/stampede?rows=10&delay_ms=$delay&front=$front"
      : >"$BENCH_DIR/curl.conf"
      for _ in $(seq 200); do
        printf 'url = "http://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "${front_port[$front]}" "$path" >>"$BENCH_DIR/curl.conf"
      done
      before="$(origin_requests "$origin_port")"
      slowest="$(curl -s --no-progress-meter --parallel --parallel-immediate --parallel-max 200 -w '%{time_total}\n' \
        -K "$BENCH_DIR/curl.conf" 2>/dev/null | sort -g | tail -n 1)"
      after="$(origin_requests "$origin_port")"
      awk -v d="$delay" -v f="$front" -v n="$((after - before))" -v s="$slowest" \
        'BEGIN { printf "| %d ms | %s | %d | %.0f |\n", d, f, n, s * 1000 - d }'
    done
  done
}

"$mode"
