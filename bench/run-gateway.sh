#!/usr/bin/env bash
# Gateway overhead: the same static stub upstream called directly, through
# aitier, and through the LiteLLM proxy, at fixed request rates with oha.
# Everything (stub, gateways, load generator) shares this machine, one at a
# time per measurement. Usage: bench/run-gateway.sh [SECONDS_PER_RUN]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=bench/.work
mkdir -p "$work"

RUSTFLAGS="-C target-cpu=native" cargo build --release --locked -p aitier-server --bin aitier --example stub_upstream
if [[ ! -x "$work/oha/bin/oha" ]]; then
  cargo install --locked --root "$work/oha" oha
fi
if [[ ! -x "$work/litellm-venv/bin/litellm" ]]; then
  python3 -m venv "$work/litellm-venv"
  "$work/litellm-venv/bin/pip" install --quiet 'litellm[proxy]'
fi

stub_port=9101 aitier_port=9102 litellm_port=9103
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

target/release/examples/stub_upstream "$stub_port" >"$work/stub.log" 2>&1 &
pids+=($!)

cat >"$work/gateway-aitier.toml" <<TOML
[server]
host = "127.0.0.1"
port = $aitier_port
[tenancy]
data_dir = "$work/gateway-data"
[routing]
health_interval_secs = 3600
[[models]]
name = "stub"
[[models.deployments]]
name = "stub"
base_url = "http://127.0.0.1:$stub_port/v1"
TOML
rm -rf "$work/gateway-data"
RUST_LOG=warn target/release/aitier serve --config "$work/gateway-aitier.toml" --metrics-addr off >"$work/aitier.log" 2>&1 &
pids+=($!)

cat >"$work/gateway-litellm.yaml" <<YAML
model_list:
  - model_name: stub
    litellm_params:
      model: openai/stub
      api_base: http://127.0.0.1:$stub_port/v1
      api_key: sk-stub
litellm_settings:
  telemetry: false
general_settings:
  master_key: sk-gateway-bench-master-key-0123456789
YAML
LITELLM_LOG=ERROR "$work/litellm-venv/bin/litellm" --config "$work/gateway-litellm.yaml" \
  --host 127.0.0.1 --port "$litellm_port" >"$work/litellm.log" 2>&1 &
pids+=($!)

python3 bench/gateway.py --oha "$work/oha/bin/oha" --seconds "$secs" \
  --direct "http://127.0.0.1:$stub_port" --aitier "http://127.0.0.1:$aitier_port" \
  --litellm "http://127.0.0.1:$litellm_port"
