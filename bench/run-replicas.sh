#!/usr/bin/env bash
# Max req/s of two aitier replicas against one, in front of the static stub
# upstream, every request checked against a tenant's limits: one replica on
# SQLite with the limits in memory (the single-replica default), then one
# and two replicas sharing a throwaway PostgreSQL and Redis (how replicas
# run). Everything shares this machine. Usage: bench/run-replicas.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=bench/.work
mkdir -p "$work"
RUSTFLAGS="-C target-cpu=native" cargo build --release --locked -p aitier-server --bin aitier --example stub_upstream
if [[ ! -x "$work/oha/bin/oha" ]]; then
  cargo install --locked --root "$work/oha" oha
fi
scripts/install-test-deps.sh

stub_port=9121 admin=replica-bench-admin-token-0123
pg_dir="$(mktemp -d)/pg"
redis_dir="$(mktemp -d)/redis"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  scripts/pg-temp.sh stop "$pg_dir" || true
  scripts/redis-temp.sh stop "$redis_dir" || true
}
trap cleanup EXIT
pg_url="$(scripts/pg-temp.sh start "$pg_dir")"
redis_url="$(scripts/redis-temp.sh start "$redis_dir")"

target/release/examples/stub_upstream "$stub_port" >"$work/replicas-stub.log" 2>&1 &
pids+=($!)

replica() {  # $1: port, $2: name, then extra flags
  local port=$1 name=$2
  shift 2
  cat >"$work/replica-$name.toml" <<TOML
[server]
host = "127.0.0.1"
port = $port
[tenancy]
admin_token = "$admin"
data_dir = "$work/replica-$name-data"
[routing]
health_interval_secs = 3600
[[models]]
name = "stub"
[[models.deployments]]
name = "stub"
base_url = "http://127.0.0.1:$stub_port/v1"
TOML
  rm -rf "$work/replica-$name-data"
  RUST_LOG=warn target/release/aitier serve --config "$work/replica-$name.toml" --metrics-addr off "$@" \
    >"$work/replica-$name.log" 2>&1 &
  pids+=($!)
}

replica 9122 sqlite
replica 9123 shared-a --database-url "$pg_url" --redis-url "$redis_url"
replica 9124 shared-b --database-url "$pg_url" --redis-url "$redis_url"
python3 bench/replicas.py --oha "$work/oha/bin/oha" --admin "$admin" --seconds "$secs" \
  --case "1 replica, SQLite, limits in memory=http://127.0.0.1:9122" \
  --case "1 replica, PostgreSQL + Redis=http://127.0.0.1:9123" \
  --case "2 replicas, PostgreSQL + Redis=http://127.0.0.1:9123,http://127.0.0.1:9124"
