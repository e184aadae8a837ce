#!/usr/bin/env bash
# What tenancy adds per request (key check, rate and concurrency limits,
# budget hold), on SQLite and on a throwaway PostgreSQL, with the limits in
# the process and in a throwaway Redis (as replicas share them), in one run.
# Usage: bench/run-tenancy.sh [REQUESTS]   (default 3000)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}
scripts/install-test-deps.sh
cargo build --release --locked --example overhead -p aitier-tenancy
pg_dir="$(mktemp -d)/pg"
redis_dir="$(mktemp -d)/redis"
trap 'scripts/pg-temp.sh stop "$pg_dir"; scripts/redis-temp.sh stop "$redis_dir"' EXIT
AITIER_TEST_POSTGRES_URL="$(scripts/pg-temp.sh start "$pg_dir")"
AITIER_TEST_REDIS_URL="$(scripts/redis-temp.sh start "$redis_dir")"
export AITIER_TEST_POSTGRES_URL AITIER_TEST_REDIS_URL
for limiter in memory redis; do
  target/release/examples/overhead sqlite "$n" "$limiter"
  target/release/examples/overhead postgres "$n" "$limiter"
done
