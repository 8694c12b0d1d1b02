#!/usr/bin/env bash
# Every check and test, as CI runs them (.ci/run calls this script).
#
#   scripts/test.sh
#
# Installs what is missing (PostgreSQL and Redis with apt-get), then: format
# check, clippy with warnings as errors, and all tests. The integration tests
# start their own throwaway PostgreSQL and Redis on free ports; nothing running
# on 5432 or 6379 is used. Fails on the first failing step.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
ensure_servers
export PG_BIN_DIR="$(pg_bin_dir)"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> cargo test (unit and integration tests)"
cargo test --workspace --locked

echo "==> all checks passed"
