#!/usr/bin/env bash
# Every check and test, as CI runs them (.ci/run and the Jenkinsfile call this).
#
#   scripts/test.sh               # all of the below
#   scripts/test.sh lint          # cargo fmt --check, clippy with warnings as errors
#   scripts/test.sh unit          # unit tests (no servers)
#   scripts/test.sh integration   # integration tests (real PostgreSQL and Redis)
#   scripts/test.sh deploy        # compose, Kubernetes and shell checks, offline
#   scripts/test.sh interfaces    # the docs page in headless chromium, schemathesis
#
# Installs what is missing (PostgreSQL and Redis with apt-get). The integration
# tests start their own throwaway PostgreSQL and Redis on free ports; nothing
# running on 5432 or 6379 is used. Fails on the first failing step.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
# Every build embeds the docs page's files (GET /docs).
ensure_docs_ui

lint() {
  echo "==> cargo fmt --check"
  cargo fmt --all -- --check
  echo "==> cargo clippy (warnings are errors)"
  cargo clippy --workspace --all-targets --locked -- -D warnings
}

servers() {
  ensure_servers
  PG_BIN_DIR="$(pg_bin_dir)"
  export PG_BIN_DIR
}

unit() {
  echo "==> unit tests"
  cargo test --workspace --lib --bins --locked
}

integration() {
  servers
  echo "==> integration tests (throwaway PostgreSQL and Redis)"
  cargo test -p integration-tests --test api --locked
}

all_tests() {
  servers
  echo "==> cargo test (unit and integration tests)"
  cargo test --workspace --locked
}

deploy() {
  scripts/check-deploy.sh
}

interfaces() {
  servers
  scripts/check-interfaces.sh
}

case "${1:-all}" in
  lint) lint ;;
  unit) unit ;;
  integration) integration ;;
  deploy) deploy ;;
  interfaces) interfaces ;;
  all) lint; all_tests; deploy; interfaces ;;
  *) echo "usage: scripts/test.sh [lint|unit|integration|deploy|interfaces]" >&2; exit 2 ;;
esac
echo "==> all checks passed"
