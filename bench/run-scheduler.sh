#!/usr/bin/env bash
# Scheduler benchmark: aitier vs llama.cpp's llama-server on the default
# model, same threads and slots, measured in one run. Writes
# bench/results/scheduler.md. Takes ~20 minutes on 2 cores (plus the peer's
# first build).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
SLOTS="${SLOTS:-20}"
CTX="${CTX:-2048}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"

source bench/common.sh
bench_prepare
PEER="$(bench/peer/build-llama-server.sh)"

WORK=bench/.work
mkdir -p bench/results "$WORK"

# One server at a time, so neither takes CPU while the other is measured, and
# a fresh server for each phase, so no phase inherits another's cache. The
# throughput levels run in ROUNDS alternating rounds, and the table takes the
# median, since this machine's speed drifts by ~10% over minutes.
ROUNDS="${ROUNDS:-3}"
rm -f "$WORK/aitier.json" "$WORK/llama-server.json"
measure() { # name url phase
  .venv/bin/python bench/load.py --nn-seconds "${NN_SECONDS:-30}" --per-worker "${PER_WORKER:-4}" --phase "$3" \
    --target "$1=$2" --json "$WORK/$1.json"
}
for phase in levels prefix noisy; do
  rounds=1
  [[ $phase == levels ]] && rounds=$ROUNDS
  for round in $(seq 1 "$rounds"); do
    target/release/aitier serve --port 18080 --threads "$THREADS" --slots "$SLOTS" --ctx-size "$CTX" --metrics-addr off \
      --data-dir "$WORK/aitier-data" --model "smollm2-135m-instruct=$MODEL" \
      >"$WORK/aitier-$phase.log" 2>&1 </dev/null &
    pid=$!
    wait_up http://127.0.0.1:18080/ready
    measure aitier http://127.0.0.1:18080 "$phase"
    stop

    "$PEER" -m "$MODEL" --port 18081 --threads "$THREADS" --threads-batch "$THREADS" -np "$SLOTS" \
      -c $((SLOTS * CTX)) --cont-batching >"$WORK/llama-server-$phase.log" 2>&1 </dev/null &
    pid=$!
    wait_up http://127.0.0.1:18081/health
    measure llama-server http://127.0.0.1:18081 "$phase"
    stop
  done
done

{
  echo "# Scheduler benchmark"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "Both servers: $THREADS threads, $SLOTS slots of $CTX tokens (one KV stream per slot), default model, a fresh server per phase."
  echo "Throughput: median of $ROUNDS alternating rounds, ${PER_WORKER:-4} requests per stream. Noisy neighbour: ${NN_SECONDS:-30} requests from B alone, then under A."
  echo
  .venv/bin/python bench/load.py --table "$WORK/aitier.json" "$WORK/llama-server.json"
} > bench/results/scheduler.md
cat bench/results/scheduler.md
