# shellcheck shell=bash
# Shared by the scripts in this folder. Source it; do not run it.

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# The newest PostgreSQL server binaries directory, if any.
pg_bin_dir() {
  if [ -n "${PG_BIN_DIR:-}" ]; then echo "$PG_BIN_DIR"; return; fi
  local dir newest=""
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && newest="$(printf '%s\n%s\n' "$newest" "$dir" | sort -V | tail -n 1)"
  done
  if [ -n "$newest" ]; then echo "$newest"; return; fi
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)"
}

# Installs PostgreSQL (server and psql) and Redis with apt-get when missing.
ensure_servers() {
  local missing=()
  [ -n "$(pg_bin_dir)" ] || missing+=(postgresql)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]} with apt-get"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# The Swagger UI files api-rest embeds for GET /docs: the pinned npm package of
# api-rest/docs-ui, installed without its install scripts (one of its
# dependencies would report the install to a third party otherwise).
ensure_docs_ui() {
  local dist=api-rest/docs-ui/node_modules/swagger-ui-dist
  if [ -f "$dist/swagger-ui-bundle.js" ] && [ "$dist/package.json" -nt api-rest/docs-ui/package-lock.json ]; then
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "==> installing npm with apt-get"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq npm >/dev/null
  fi
  echo "==> installing the docs page's files (npm ci, api-rest/docs-ui)"
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error --prefix api-rest/docs-ui >/dev/null
  touch "$dist/package.json"
}

# A TCP port nobody listens on.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Runs a command as the postgres user when we are root (initdb refuses root).
as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_up DIR PORT: a throwaway cluster in DIR/pgdata, listening on 127.0.0.1:PORT
# and on a socket in DIR; the admin user ($POSTGRES_USER) connects over the
# socket without a password, everyone else over TCP with SCRAM.
pg_up() {
  local dir="$1" port="$2" bin
  bin="$(pg_bin_dir)"
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  as_postgres "$bin/initdb" -D "$dir/pgdata" -U "${POSTGRES_USER:-postgres}" --auth-local=trust \
    --auth-host=scram-sha-256 --no-sync >/dev/null
  as_postgres "$bin/pg_ctl" -D "$dir/pgdata" -l "$dir/postgres.log" -w \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
}

# pg_down DIR: stops the cluster started by pg_up (fast shutdown).
pg_down() {
  as_postgres "$(pg_bin_dir)/pg_ctl" -D "$1/pgdata" -m fast -w stop >/dev/null 2>&1 || true
}

# pg_init DIR PORT [VAR=value ...]: runs postgres/init-script.sh against the cluster.
pg_init() {
  local dir="$1" port="$2"
  shift 2
  env PGHOST="$dir" PGPORT="$port" PATH="$(pg_bin_dir):$PATH" "$@" bash postgres/init-script.sh
}
