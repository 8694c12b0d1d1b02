#!/usr/bin/env bash
# Creates the API schema, the stations and air_quality_measurements tables and a
# read-only API user, and loads postgres/stations.csv and postgres/air_quality.csv.
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
#   AIR_QUALITY_STATIONS_CSV  the stations file (default: stations.csv next to
#                          this script); every station a measurement names must
#                          be in it

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
  local stations_csv="${AIR_QUALITY_STATIONS_CSV:-$here/stations.csv}"
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
  if [ ! -r "$stations_csv" ]; then
    echo "init-script.sh: cannot read the stations file $stations_csv (set AIR_QUALITY_STATIONS_CSV)." >&2
    return 1
  fi
  # \copy takes its file name literally (no psql variables): quote each for SQL here.
  local stations_copy="\\copy stations_staging FROM '${stations_csv//\'/\'\'}' WITH (FORMAT csv, HEADER true)"
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
SET search_path = :"schema";

-- Stations: where each id_entity of the measurements is. Synthetic in this
-- repository (postgres/stations.csv, from the generator).
CREATE TABLE IF NOT EXISTS stations (
    id_entity    varchar(50)      PRIMARY KEY,
    name         text             NOT NULL,
    latitude     double precision NOT NULL CHECK (latitude BETWEEN -90 AND 90),
    longitude    double precision NOT NULL CHECK (longitude BETWEEN -180 AND 180),
    elevation_m  double precision,
    area         text             NOT NULL CHECK (area IN ('urban', 'suburban', 'rural')),
    station_type text             NOT NULL CHECK (station_type IN ('traffic', 'industrial', 'background')),
    timezone     text             NOT NULL
);

-- Databases made before the table was partitioned: the old table steps aside
-- (renamed, with its indexes) and its rows move to the partitioned one below,
-- in this transaction; a count that differs aborts it, so no row is lost.
DO \$migrate\$
BEGIN
    IF EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = current_schema() AND c.relname = 'air_quality_measurements'
                  AND c.relkind = 'r') THEN
        RAISE NOTICE 'moving air_quality_measurements into monthly partitions';
        ALTER TABLE air_quality_measurements RENAME TO air_quality_measurements_unpartitioned;
        ALTER INDEX IF EXISTS air_quality_measurements_pkey
            RENAME TO air_quality_measurements_unpartitioned_pkey;
        ALTER INDEX IF EXISTS air_quality_measurements_time_idx
            RENAME TO air_quality_measurements_unpartitioned_time_idx;
    END IF;
END
\$migrate\$;

-- Partitioned by month of time_instant: a time range reads only its months,
-- and old months can be detached or dropped whole. Rows of a month without a
-- partition land in the default one until air_quality_add_partitions makes it.
CREATE TABLE IF NOT EXISTS air_quality_measurements (
    time_instant timestamp without time zone NOT NULL,
    id_entity    varchar(50)                 NOT NULL,
    so2          double precision,
    no2          double precision,
    co           double precision,
    o3           double precision,
    pm10         double precision,
    pm2_5        double precision,
    -- Covering: one station's rows over a period are read from the index
    -- alone, in order, without visiting the table (aggregates, latest, AQI).
    CONSTRAINT air_quality_measurements_pkey PRIMARY KEY (id_entity, time_instant)
        INCLUDE (so2, no2, co, o3, pm10, pm2_5),
    CONSTRAINT air_quality_measurements_station_fkey FOREIGN KEY (id_entity)
        REFERENCES stations (id_entity)
) PARTITION BY RANGE (time_instant);
-- The primary key serves per-station queries; this index serves time ranges and
-- the API's default order (time_instant, id_entity) without a sort.
CREATE INDEX IF NOT EXISTS air_quality_measurements_time_idx
    ON air_quality_measurements (time_instant, id_entity);
CREATE TABLE IF NOT EXISTS air_quality_measurements_default
    PARTITION OF air_quality_measurements DEFAULT;

-- Makes the monthly partitions from first_month to last_month that do not
-- exist yet, moving their rows out of the default partition; returns how
-- many it made. The maintenance job calls it ahead of time, e.g. monthly:
--   SELECT api.air_quality_add_partitions(now()::timestamp, now()::timestamp + interval '3 months');
CREATE OR REPLACE FUNCTION air_quality_add_partitions(first_month timestamp, last_month timestamp)
    RETURNS integer LANGUAGE plpgsql SET search_path FROM CURRENT AS \$body\$
DECLARE
    month   timestamp := date_trunc('month', first_month);
    part    text;
    made    integer := 0;
BEGIN
    WHILE month <= date_trunc('month', last_month) LOOP
        part := 'air_quality_measurements_' || to_char(month, '"y"YYYY"m"MM');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I (LIKE air_quality_measurements)', part);
            EXECUTE format('WITH moved AS (DELETE FROM air_quality_measurements_default '
                           'WHERE time_instant >= %L AND time_instant < %L RETURNING *) '
                           'INSERT INTO %I SELECT * FROM moved',
                           month, month + interval '1 month', part);
            EXECUTE format('ALTER TABLE air_quality_measurements ATTACH PARTITION %I '
                           'FOR VALUES FROM (%L) TO (%L)',
                           part, month, month + interval '1 month');
            made := made + 1;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN made;
END
\$body\$;
REVOKE ALL ON FUNCTION air_quality_add_partitions(timestamp, timestamp) FROM PUBLIC;

-- Databases made by earlier versions of this script: a primary key without
-- the covered columns is rebuilt with them.
DO \$upgrade\$
BEGIN
    IF EXISTS (SELECT FROM pg_index
                WHERE indexrelid = 'air_quality_measurements_pkey'::regclass
                  AND indnatts = indnkeyatts) THEN
        ALTER TABLE air_quality_measurements
            DROP CONSTRAINT air_quality_measurements_pkey,
            ADD CONSTRAINT air_quality_measurements_pkey PRIMARY KEY (id_entity, time_instant)
                INCLUDE (so2, no2, co, o3, pm10, pm2_5);
    END IF;
END
\$upgrade\$;

-- The data version: one row, bumped by every statement that changes the data.
-- api-rest derives its ETag and Last-Modified from it (cheap validators: no
-- body is hashed), and a change makes every cached copy revalidate to new data.
CREATE TABLE IF NOT EXISTS air_quality_data_version (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    version    bigint      NOT NULL,
    changed_at timestamptz NOT NULL
);
INSERT INTO air_quality_data_version (version, changed_at)
    VALUES (1, now()) ON CONFLICT (singleton) DO NOTHING;

-- The latest non-empty reading of each pollutant at each station, kept by the
-- triggers below in the transaction that changes the measurements: the
-- latest readings and the AQI read a few rows, whatever the table holds.
CREATE TABLE IF NOT EXISTS air_quality_latest (
    id_entity    varchar(50)      NOT NULL REFERENCES stations (id_entity) ON DELETE CASCADE,
    pollutant    text             NOT NULL
                 CHECK (pollutant IN ('so2', 'no2', 'co', 'o3', 'pm10', 'pm2_5')),
    time_instant timestamp without time zone NOT NULL,
    value        double precision NOT NULL,
    PRIMARY KEY (id_entity, pollutant)
);

-- Each station's first and last measurement, kept by the same triggers: over
-- monthly partitions, min() and max() would probe every month's index.
CREATE TABLE IF NOT EXISTS air_quality_spans (
    id_entity  varchar(50) PRIMARY KEY REFERENCES stations (id_entity) ON DELETE CASCADE,
    first_time timestamp without time zone NOT NULL,
    last_time  timestamp without time zone NOT NULL
);

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

-- New rows: per station and pollutant, the newest non-empty one replaces the
-- latest reading if it is newer (one pass over the statement's rows).
CREATE OR REPLACE FUNCTION air_quality_latest_add() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS \$body\$
BEGIN
    INSERT INTO air_quality_latest AS l (id_entity, pollutant, time_instant, value)
    SELECT c.id_entity, c.pollutant, c.time_instant,
           CASE c.pollutant WHEN 'so2' THEN m.so2 WHEN 'no2' THEN m.no2 WHEN 'co' THEN m.co
                            WHEN 'o3' THEN m.o3 WHEN 'pm10' THEN m.pm10 ELSE m.pm2_5 END
      FROM (SELECT n.id_entity, p.pollutant, p.time_instant
              FROM (SELECT id_entity,
                           max(time_instant) FILTER (WHERE so2 IS NOT NULL) AS so2,
                           max(time_instant) FILTER (WHERE no2 IS NOT NULL) AS no2,
                           max(time_instant) FILTER (WHERE co IS NOT NULL) AS co,
                           max(time_instant) FILTER (WHERE o3 IS NOT NULL) AS o3,
                           max(time_instant) FILTER (WHERE pm10 IS NOT NULL) AS pm10,
                           max(time_instant) FILTER (WHERE pm2_5 IS NOT NULL) AS pm2_5
                      FROM changed_rows GROUP BY id_entity) n
             CROSS JOIN LATERAL (VALUES ('so2', n.so2), ('no2', n.no2), ('co', n.co),
                                        ('o3', n.o3), ('pm10', n.pm10), ('pm2_5', n.pm2_5))
                   AS p (pollutant, time_instant)
             WHERE p.time_instant IS NOT NULL) c
      JOIN air_quality_measurements m
        ON m.id_entity = c.id_entity AND m.time_instant = c.time_instant
    ON CONFLICT (id_entity, pollutant) DO UPDATE
       SET time_instant = excluded.time_instant, value = excluded.value
     WHERE l.time_instant <= excluded.time_instant;
    INSERT INTO air_quality_spans AS s (id_entity, first_time, last_time)
    SELECT id_entity, min(time_instant), max(time_instant) FROM changed_rows GROUP BY id_entity
    ON CONFLICT (id_entity) DO UPDATE
       SET first_time = least(s.first_time, excluded.first_time),
           last_time = greatest(s.last_time, excluded.last_time)
     WHERE excluded.first_time < s.first_time OR excluded.last_time > s.last_time;
    RETURN NULL;
END
\$body\$;

-- Changed or deleted rows: the latest readings of the stations concerned are
-- looked up again (newest first in the primary key; updates and deletes are
-- rare in a measurement table).
CREATE OR REPLACE FUNCTION air_quality_latest_recompute() RETURNS trigger
    LANGUAGE plpgsql SET search_path FROM CURRENT AS \$body\$
DECLARE
    touched varchar(50)[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        TRUNCATE air_quality_latest, air_quality_spans;
        RETURN NULL;
    ELSIF TG_OP = 'UPDATE' THEN
        SELECT array_agg(DISTINCT id_entity) INTO touched
          FROM (SELECT id_entity FROM changed_rows UNION SELECT id_entity FROM old_rows) t;
    ELSE
        SELECT array_agg(DISTINCT id_entity) INTO touched FROM changed_rows;
    END IF;
    DELETE FROM air_quality_latest WHERE id_entity = ANY (touched);
    INSERT INTO air_quality_latest (id_entity, pollutant, time_instant, value)
    SELECT t.id_entity, p.pollutant, r.time_instant, r.value
      FROM unnest(touched) AS t (id_entity)
     CROSS JOIN (VALUES ('so2'), ('no2'), ('co'), ('o3'), ('pm10'), ('pm2_5')) AS p (pollutant)
     CROSS JOIN LATERAL (
           SELECT m.time_instant, v.value
             FROM air_quality_measurements m
            CROSS JOIN LATERAL (SELECT CASE p.pollutant WHEN 'so2' THEN m.so2 WHEN 'no2' THEN m.no2
                                       WHEN 'co' THEN m.co WHEN 'o3' THEN m.o3
                                       WHEN 'pm10' THEN m.pm10 ELSE m.pm2_5 END) AS v (value)
            WHERE m.id_entity = t.id_entity AND v.value IS NOT NULL
            ORDER BY m.time_instant DESC
            LIMIT 1) r;
    DELETE FROM air_quality_spans WHERE id_entity = ANY (touched);
    INSERT INTO air_quality_spans (id_entity, first_time, last_time)
    SELECT id_entity, min(time_instant), max(time_instant)
      FROM air_quality_measurements WHERE id_entity = ANY (touched) GROUP BY id_entity;
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

DROP TRIGGER IF EXISTS air_quality_latest_inserted ON air_quality_measurements;
DROP TRIGGER IF EXISTS air_quality_latest_updated ON air_quality_measurements;
DROP TRIGGER IF EXISTS air_quality_latest_deleted ON air_quality_measurements;
DROP TRIGGER IF EXISTS air_quality_latest_truncated ON air_quality_measurements;
CREATE TRIGGER air_quality_latest_inserted AFTER INSERT ON air_quality_measurements
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_latest_add();
CREATE TRIGGER air_quality_latest_updated AFTER UPDATE ON air_quality_measurements
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_latest_recompute();
CREATE TRIGGER air_quality_latest_deleted AFTER DELETE ON air_quality_measurements
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_latest_recompute();
CREATE TRIGGER air_quality_latest_truncated AFTER TRUNCATE ON air_quality_measurements
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_latest_recompute();

-- A station's change is a data change too (answers carry station fields).
DROP TRIGGER IF EXISTS stations_inserted ON stations;
DROP TRIGGER IF EXISTS stations_updated ON stations;
DROP TRIGGER IF EXISTS stations_deleted ON stations;
CREATE TRIGGER stations_inserted AFTER INSERT ON stations
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_bump_version();
CREATE TRIGGER stations_updated AFTER UPDATE ON stations
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_bump_version();
CREATE TRIGGER stations_deleted AFTER DELETE ON stations
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION air_quality_bump_version();

-- The stations: new ones added, changed ones updated, equal ones left alone.
CREATE TEMPORARY TABLE stations_staging (LIKE stations) ON COMMIT DROP;
${stations_copy}
DO \$check\$
DECLARE
    unknown text;
BEGIN
    SELECT string_agg(DISTINCT timezone, ', ') INTO unknown
      FROM stations_staging WHERE timezone NOT IN (SELECT name FROM pg_timezone_names);
    IF unknown IS NOT NULL THEN
        RAISE EXCEPTION 'the stations file names unknown time zones: %', unknown;
    END IF;
END
\$check\$;
INSERT INTO stations AS s SELECT * FROM stations_staging
    ON CONFLICT (id_entity) DO UPDATE
       SET name = excluded.name, latitude = excluded.latitude, longitude = excluded.longitude,
           elevation_m = excluded.elevation_m, area = excluded.area,
           station_type = excluded.station_type, timezone = excluded.timezone
     WHERE (s.name, s.latitude, s.longitude, s.elevation_m, s.area, s.station_type, s.timezone)
           IS DISTINCT FROM (excluded.name, excluded.latitude, excluded.longitude,
                             excluded.elevation_m, excluded.area, excluded.station_type,
                             excluded.timezone);

-- Databases made before partitioning (see above): their rows move in, now
-- that the stations they name are loaded.
DO \$migrate\$
DECLARE
    before bigint;
    after  bigint;
    missing text;
BEGIN
    IF to_regclass('air_quality_measurements_unpartitioned') IS NOT NULL THEN
        SELECT string_agg(id_entity, ', ') INTO missing
          FROM (SELECT DISTINCT id_entity FROM air_quality_measurements_unpartitioned m
                 WHERE NOT EXISTS (SELECT FROM stations s WHERE s.id_entity = m.id_entity)
                 ORDER BY id_entity LIMIT 20) orphans;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'measurements name stations missing from the stations file: %', missing;
        END IF;
        PERFORM air_quality_add_partitions(min(time_instant), max(time_instant))
           FROM air_quality_measurements_unpartitioned HAVING count(*) > 0;
        INSERT INTO air_quality_measurements SELECT * FROM air_quality_measurements_unpartitioned;
        SELECT count(*) INTO before FROM air_quality_measurements_unpartitioned;
        SELECT count(*) INTO after FROM air_quality_measurements;
        IF before <> after THEN
            RAISE EXCEPTION 'moving into partitions: % rows before, % after; nothing was changed',
                before, after;
        END IF;
        DROP TABLE air_quality_measurements_unpartitioned;
    END IF;
END
\$migrate\$;

-- Databases made by earlier versions: measurements gain their foreign key
-- (every station they name must be in the stations file), and the latest
-- readings are computed once.
DO \$upgrade\$
DECLARE
    missing text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_constraint
                    WHERE conname = 'air_quality_measurements_station_fkey'
                      AND conrelid = 'air_quality_measurements'::regclass) THEN
        SELECT string_agg(id_entity, ', ') INTO missing
          FROM (SELECT DISTINCT id_entity FROM air_quality_measurements m
                 WHERE NOT EXISTS (SELECT FROM stations s WHERE s.id_entity = m.id_entity)
                 ORDER BY id_entity LIMIT 20) orphans;
        IF missing IS NOT NULL THEN
            RAISE EXCEPTION 'measurements name stations missing from the stations file: %', missing;
        END IF;
        ALTER TABLE air_quality_measurements ADD CONSTRAINT air_quality_measurements_station_fkey
            FOREIGN KEY (id_entity) REFERENCES stations (id_entity);
    END IF;
    IF NOT EXISTS (SELECT FROM air_quality_latest)
       AND EXISTS (SELECT FROM air_quality_measurements) THEN
        INSERT INTO air_quality_latest (id_entity, pollutant, time_instant, value)
        SELECT DISTINCT ON (m.id_entity, p.pollutant) m.id_entity, p.pollutant, m.time_instant, p.value
          FROM air_quality_measurements m
         CROSS JOIN LATERAL (VALUES ('so2', m.so2), ('no2', m.no2), ('co', m.co),
                                    ('o3', m.o3), ('pm10', m.pm10), ('pm2_5', m.pm2_5))
               AS p (pollutant, value)
         WHERE p.value IS NOT NULL
         ORDER BY m.id_entity, p.pollutant, m.time_instant DESC;
    END IF;
    IF NOT EXISTS (SELECT FROM air_quality_spans)
       AND EXISTS (SELECT FROM air_quality_measurements) THEN
        INSERT INTO air_quality_spans (id_entity, first_time, last_time)
        SELECT id_entity, min(time_instant), max(time_instant)
          FROM air_quality_measurements GROUP BY id_entity;
    END IF;
END
\$upgrade\$;

-- Load through a staging table so that a second run inserts nothing twice.
CREATE TEMPORARY TABLE air_quality_staging
    (LIKE air_quality_measurements) ON COMMIT DROP;
${copy_lines}DO \$check\$
DECLARE
    missing text;
BEGIN
    SELECT string_agg(id_entity, ', ') INTO missing
      FROM (SELECT DISTINCT id_entity FROM air_quality_staging a
             WHERE NOT EXISTS (SELECT FROM stations s WHERE s.id_entity = a.id_entity)
             ORDER BY id_entity LIMIT 20) unknown;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'the measurement files name stations missing from the stations file: %', missing;
    END IF;
END
\$check\$;
-- The months of the data, and three ahead of its newest.
DO \$partitions\$
BEGIN
    PERFORM air_quality_add_partitions(min(time_instant), max(time_instant) + interval '3 months')
       FROM air_quality_staging HAVING count(*) > 0;
END
\$partitions\$;
INSERT INTO air_quality_measurements
    SELECT * FROM air_quality_staging
    ON CONFLICT (id_entity, time_instant) DO NOTHING;
RESET search_path;

-- The API user: it may log in and read these tables, nothing else.
SELECT format('CREATE ROLE %I', :'api_user')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'api_user') \gexec
ALTER ROLE :"api_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
    PASSWORD ${password_literal};
ALTER ROLE :"api_user" SET default_transaction_read_only = on;
GRANT CONNECT ON DATABASE :"DBNAME" TO :"api_user";
GRANT USAGE ON SCHEMA :"schema" TO :"api_user";
GRANT SELECT ON :"schema".air_quality_measurements, :"schema".air_quality_data_version,
    :"schema".stations, :"schema".air_quality_latest, :"schema".air_quality_spans TO :"api_user";

COMMIT;
-- VACUUM marks the pages all-visible, so the covering index is read alone.
VACUUM (ANALYZE) :"schema".air_quality_measurements;
ANALYZE :"schema".stations;
ANALYZE :"schema".air_quality_latest;
ANALYZE :"schema".air_quality_spans;
SQL
  echo "init-script.sh: done" >&2
)

air_quality_init "$@"
