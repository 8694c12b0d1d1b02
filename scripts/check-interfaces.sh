#!/usr/bin/env bash
# The interfaces as a client sees them, on a whole local stack
# (scripts/run-local.sh, debug build, free ports):
#
#   - the docs page in headless chromium: every operation listed, "Try it out"
#     on /air_quality?limit=1 answers 200 with a row, nothing fetched from
#     another host; screenshot in target/docs-page.png;
#   - schemathesis over /openapi.json through api-cache: no server error, no
#     status, content type, header or body the document does not allow.
#
# Installs chromium, chromedriver and (in target/interfaces-venv) schemathesis
# and selenium when missing. SCHEMATHESIS_MAX_EXAMPLES bounds the run (default 40
# per operation).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_docs_ui
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "==> installing chromium and chromedriver"
  as_root apt-get update -qq
  as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
venv=target/interfaces-venv
if [ ! -x "$venv/bin/schemathesis" ] || ! cmp -s scripts/requirements-interfaces.txt "$venv/requirements.txt"; then
  echo "==> installing schemathesis and selenium into $venv"
  python3 -m venv "$venv" 2>/dev/null || { as_root apt-get install -y -qq python3-venv >/dev/null; python3 -m venv "$venv"; }
  "$venv/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-interfaces.txt
  cp scripts/requirements-interfaces.txt "$venv/requirements.txt"
fi

cache_port="$(free_port)"
log="target/interfaces-stack.log"
echo "==> starting the stack (log: $log)"
PROFILE=debug API_CACHE_PORT="$cache_port" API_REST_PORT="$(free_port)" \
  API_CACHE_ADMIN_PORT="$(free_port)" API_REST_ADMIN_PORT="$(free_port)" \
  LOCAL_LOG_FORMAT=json setsid scripts/run-local.sh >"$log" 2>&1 &
stack=$!
trap 'kill -INT -- "-$stack" 2>/dev/null || true; wait "$stack" 2>/dev/null || true' EXIT
base="http://127.0.0.1:$cache_port"
for _ in $(seq 600); do
  curl -fsS -o /dev/null "$base/air_quality?limit=1" 2>/dev/null && break
  kill -0 "$stack" 2>/dev/null || { tail -20 "$log"; echo "the stack did not start" >&2; exit 1; }
  sleep 0.5
done

echo "==> docs page in headless chromium"
"$venv/bin/python" scripts/checks/docs_page.py "$base" target/docs-page.png

echo "==> schemathesis over $base/openapi.json"
"$venv/bin/schemathesis" run "$base/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-40}" --seed 1 --workers 2 \
  --request-timeout 30 --generation-database none \
  --report junit --report-dir target/schemathesis
