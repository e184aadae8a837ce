#!/usr/bin/env bash
# What tenancy adds per request (key check, rate and concurrency limits,
# budget hold), on SQLite and on a throwaway PostgreSQL, in one run.
# Usage: bench/run-tenancy.sh [REQUESTS]   (default 3000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}
scripts/install-test-deps.sh
cargo build --release --locked --example overhead -p aitier-tenancy
pg_dir="$(mktemp -d)/pg"
trap 'scripts/pg-temp.sh stop "$pg_dir"; rmdir "$(dirname "$pg_dir")" 2>/dev/null || true' EXIT
AITIER_TEST_POSTGRES_URL="$(scripts/pg-temp.sh start "$pg_dir")"
export AITIER_TEST_POSTGRES_URL
target/release/examples/overhead sqlite "$n"
target/release/examples/overhead postgres "$n"
