#!/usr/bin/env bash
# Scheduler benchmark: aitier vs llama.cpp's llama-server on the default
# model, same threads and slots, measured in one run. Writes
# bench/results/scheduler.md. Takes ~15 minutes on 2 cores (plus the peer's
# first build).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
SLOTS="${SLOTS:-20}"
CTX="${CTX:-2048}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"

scripts/install-build-deps.sh
scripts/fetch-model.sh
PEER="$(bench/peer/build-llama-server.sh)"
RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}" cargo build --release --locked -p aitier-server --bin aitier
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check httpx

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

target/release/aitier serve --port 18080 --threads "$THREADS" --slots "$SLOTS" --ctx-size "$CTX" \
  --model "smollm2-135m-instruct=$MODEL" >/tmp/aitier-bench.log 2>&1 &
pids+=($!)
"$PEER" -m "$MODEL" --port 18081 --threads "$THREADS" --threads-batch "$THREADS" -np "$SLOTS" \
  -c $((SLOTS * CTX)) --cont-batching --kv-unified >/tmp/llama-server-bench.log 2>&1 &
pids+=($!)
for url in http://127.0.0.1:18080/ready http://127.0.0.1:18081/health; do
  for _ in $(seq 1 120); do curl -sf "$url" >/dev/null && break; sleep 1; done
done

# One target at a time, so neither runs while the other is measured.
mkdir -p bench/results
.venv/bin/python bench/load.py --target aitier=http://127.0.0.1:18080 \
  --target llama-server=http://127.0.0.1:18081 --out bench/results/scheduler.md
