#!/usr/bin/env bash
# Creates the API schema, the air_quality_measurements table and a read-only API
# user, and loads postgres/air_quality.csv into the table.
#
# It runs unchanged in two ways:
#  - by the official postgres image, from /docker-entrypoint-initdb.d, the first
#    time the container starts on an empty volume (the image executes it, or
#    sources it when the file is not executable, as from a Kubernetes ConfigMap);
#  - against any PostgreSQL with psql: `bash postgres/init-script.sh`, with
#    PGHOST/PGPORT/PGPASSWORD pointing at the server (this is what the tests do).
# Running it again changes nothing: no error, no duplicated row.
#
# Variables (the same names as environment.env):
#   POSTGRES_API_PASSWORD  required; the API user's password
#   POSTGRES_USER          the admin user psql connects as      (default postgres)
#   POSTGRES_DB            the database to create the table in   (default $POSTGRES_USER)
#   POSTGRES_API_USER      the read-only user api-rest logs in as (default api)
#   POSTGRES_API_SCHEMA    the schema holding the table          (default api)
#   AIR_QUALITY_CSV        the data file(s), space-separated (default: every
#                          air_quality*.csv next to this script, in name order;
#                          Kubernetes mounts the data as several parts, since one
#                          ConfigMap applied with `kubectl apply` holds < 256 KiB)

# Everything runs in a subshell so that, when the image sources this file, our
# shell options and variables do not leak into its entrypoint.
air_quality_init() (
  set -Eeuo pipefail

  local admin_user="${POSTGRES_USER:-postgres}"
  local database="${POSTGRES_DB:-$admin_user}"
  local api_user="${POSTGRES_API_USER:-api}"
  local api_password="${POSTGRES_API_PASSWORD:-}"
  local schema="${POSTGRES_API_SCHEMA:-api}"
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  local csv_files=()
  if [ -n "${AIR_QUALITY_CSV:-}" ]; then
    read -r -a csv_files <<< "$AIR_QUALITY_CSV"
  else
    local f
    for f in "$here"/air_quality*.csv; do
      [ -e "$f" ] && csv_files+=("$f")
    done
  fi

  if [ -z "$api_password" ]; then
    echo "init-script.sh: POSTGRES_API_PASSWORD is empty; set it in environment.env" \
         "(generate one with: head -c 24 /dev/urandom | base64) and start again." >&2
    return 1
  fi
  if [ "$api_user" = "$admin_user" ]; then
    echo "init-script.sh: POSTGRES_API_USER must differ from POSTGRES_USER ($admin_user):" \
         "the API logs in as a separate read-only user." >&2
    return 1
  fi
  if [ ${#csv_files[@]} -eq 0 ]; then
    echo "init-script.sh: no air_quality*.csv next to $here (set AIR_QUALITY_CSV)." >&2
    return 1
  fi
  # \copy takes its file name literally (no psql variables): quote each for SQL here.
  local copy_lines="" file
  for file in "${csv_files[@]}"; do
    if [ ! -r "$file" ]; then
      echo "init-script.sh: cannot read the data file $file." >&2
      return 1
    fi
    copy_lines+="\\copy air_quality_staging FROM '${file//\'/\'\'}' WITH (FORMAT csv, HEADER true)"$'\n'
  done

  # The password goes into the SQL psql reads on its standard input, as a
  # literal (quotes doubled), never on its command line, where ps shows it.
  local password_literal="'${api_password//\'/\'\'}'"

  echo "init-script.sh: loading ${csv_files[*]} into \"$database\".\"$schema\".air_quality_measurements" >&2
  psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 \
       --username "$admin_user" --dbname "$database" \
       -v schema="$schema" -v api_user="$api_user" \
       <<SQL
-- Keep the password out of the server log whatever log_statement says.
SET log_statement = 'none';
SET client_min_messages = warning;
BEGIN;

CREATE SCHEMA IF NOT EXISTS :"schema";

CREATE TABLE IF NOT EXISTS :"schema".air_quality_measurements (
    time_instant timestamp without time zone NOT NULL,
    id_entity    varchar(50)                 NOT NULL,
    so2          double precision,
    no2          double precision,
    co           double precision,
    o3           double precision,
    pm10         double precision,
    pm2_5        double precision,
    CONSTRAINT air_quality_measurements_pkey PRIMARY KEY (id_entity, time_instant)
);
-- The primary key serves per-station queries; this index serves time ranges and
-- the API's default order (time_instant, id_entity) without a sort.
CREATE INDEX IF NOT EXISTS air_quality_measurements_time_idx
    ON :"schema".air_quality_measurements (time_instant, id_entity);

-- The data version: one row, bumped by every statement that changes the table.
-- api-rest derives its ETag and Last-Modified from it (cheap validators: no
-- body is hashed), and a change makes every cached copy revalidate to new data.
CREATE TABLE IF NOT EXISTS :"schema".air_quality_data_version (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint      NOT NULL,
    changed_at timestamptz NOT NULL
);
INSERT INTO :"schema".air_quality_data_version (version, changed_at)
    VALUES (1, now()) ON CONFLICT (singleton) DO NOTHING;

SET search_path = :"schema";
-- Statement-level, and only when the statement changed rows (a re-run of this
-- script inserts nothing and bumps nothing). The new version is also sent with
-- NOTIFY air_quality_changed, delivered when the transaction commits: api-rest
-- listens and tells every api-cache replica at once.
CREATE OR REPLACE FUNCTION air_quality_bump_version() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS \$body\$
DECLARE
    new_version bigint;
BEGIN
    -- TRUNCATE has no transition table: test it apart.
    IF TG_OP <> 'TRUNCATE' THEN
        IF NOT EXISTS (SELECT FROM changed_rows) THEN
            RETURN NULL;
        END IF;
    END IF;
    UPDATE air_quality_data_version SET version = version + 1, changed_at = now()
        RETURNING version INTO new_version;
    PERFORM pg_notify('air_quality_changed', new_version::text);
    RETURN NULL;
END
\$body\$;
DROP TRIGGER IF EXISTS air_quality_measurements_changed ON air_quality_measurements;
DROP TRIGGER IF EXISTS air_quality_measurements_inserted ON air_quality_measurements;
DROP TRIGGER IF EXISTS air_quality_measurements_updated ON air_quality_measurements;
DROP TRIGGER IF EXISTS air_quality_measurements_deleted ON air_quality_measurements;
DROP TRIGGER IF EXISTS air_quality_measurements_truncated ON air_quality_measurements;
CREATE TRIGGER air_quality_measurements_inserted AFTER INSERT ON air_quality_measurements
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_bump_version();
CREATE TRIGGER air_quality_measurements_updated AFTER UPDATE ON air_quality_measurements
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_bump_version();
CREATE TRIGGER air_quality_measurements_deleted AFTER DELETE ON air_quality_measurements
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_bump_version();
CREATE TRIGGER air_quality_measurements_truncated AFTER TRUNCATE ON air_quality_measurements
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_bump_version();
RESET search_path;

-- Load through a staging table so that a second run inserts nothing twice.
CREATE TEMPORARY TABLE air_quality_staging
    (LIKE :"schema".air_quality_measurements) ON COMMIT DROP;
${copy_lines}INSERT INTO :"schema".air_quality_measurements
    SELECT * FROM air_quality_staging
    ON CONFLICT (id_entity, time_instant) DO NOTHING;

-- The API user: it may log in and read this one table, nothing else.
SELECT format('CREATE ROLE %I', :'api_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'api_user') \gexec
ALTER ROLE :"api_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD ${password_literal};
ALTER ROLE :"api_user" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"DBNAME" TO :"api_user";
GRANT USAGE ON SCHEMA :"schema" TO :"api_user";
GRANT SELECT ON :"schema".air_quality_measurements, :"schema".air_quality_data_version TO :"api_user";

COMMIT;
ANALYZE :"schema".air_quality_measurements;
SQL
  echo "init-script.sh: done" >&2
)

air_quality_init "$@"
