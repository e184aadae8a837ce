#!/usr/bin/env bash
# Prefix-aware routing against least-outstanding routing over two local
# engines of one model (bench/prefix_routing.py), alternating the two in
# one session, each run on a fresh server (cold caches), with the engines'
# default 4 slots and with 8 (room for more prompts than run at once).
# Usage: bench/run-prefix-routing.sh [ROUNDS]   (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
work=bench/.work
mkdir -p "$work"
RUSTFLAGS="-C target-cpu=native" cargo build --release --locked -p aitier-server --bin aitier
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check httpx
make model >/dev/null

port=9111 admin=prefix-bench-admin-token-0123
out="$work/prefix-routing.jsonl"
rm -f "$out"
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT

serve() {  # $1: balance, $2: slots per engine
  cat >"$work/prefix-$1.toml" <<TOML
[server]
host = "127.0.0.1"
port = $port
[tenancy]
data_dir = "$work/prefix-data"
admin_token = "$admin"
[engine]
threads = 1          # an engine per core: two engines on the 2 cores
slots = $2
[routing]
balance = "$1"
health_interval_secs = 3600
[[models]]
name = "m"
[[models.deployments]]
name = "engine-a"
path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
[[models.deployments]]
name = "engine-b"
path = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
TOML
  rm -rf "$work/prefix-data"
  RUST_LOG=warn target/release/aitier serve --config "$work/prefix-$1.toml" --metrics-addr off \
    >"$work/prefix-$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do
    if curl -fsS -H "authorization: Bearer $admin" "http://127.0.0.1:$port/admin/v1/models" 2>/dev/null \
        | grep -q '"status":"loaded"'; then return; fi
    sleep 0.5
  done
  echo "aitier did not come up; see $work/prefix-$1.log" >&2
  exit 1
}

for slots in 4 8; do
  for r in $(seq 1 "$rounds"); do
    for balance in prefix least-outstanding; do
      serve "$balance" "$slots"
      .venv/bin/python bench/prefix_routing.py --url "http://127.0.0.1:$port" --admin "$admin" \
        --label "$balance, $slots slots" --json "$out" --seed "$r"
      kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    done
  done
done
.venv/bin/python bench/prefix_routing.py --table "$out"
