#!/usr/bin/env bash
# Scheduler benchmark: aitier vs llama.cpp's llama-server on the default
# model, same threads and slots, measured in one run, beside llama-bench's
# tg128 (the engine with no server) and each server's resident memory.
# Writes bench/results/scheduler.md. Takes ~25 minutes on 2 cores (plus the
# peer's first build).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
SLOTS="${SLOTS:-20}"
CTX="${CTX:-2048}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"

source bench/common.sh
bench_prepare
PEER="$(bench/peer/build-llama-server.sh)"
LLAMA_BENCH="$(dirname "$PEER")/llama-bench"

WORK=bench/.work
mkdir -p bench/results "$WORK"

# One server at a time, so neither takes CPU while the other is measured, and
# a fresh server for each phase, so no phase inherits another's cache. The
# throughput levels run in ROUNDS alternating rounds, and the table takes the
# median, since this machine's speed drifts by ~10% over minutes.
ROUNDS="${ROUNDS:-3}"
A_SECONDS="${A_SECONDS:-120}"
rm -f "$WORK/aitier.json" "$WORK/llama-server.json" "$WORK/llama-bench.txt" "$WORK/rss.tsv"
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
# Measures the server just started (pid) once it answers at URL/READY, with
# its resident memory then and after the phase, and stops it.
measure() { # name url ready-path
  wait_up "$2$3"
  local rss_start
  rss_start=$(rss_mib "$pid")
  .venv/bin/python bench/load.py --nn-seconds "${NN_SECONDS:-30}" --a-seconds "$A_SECONDS" \
    --per-worker "${PER_WORKER:-2}" --phase "$phase" --target "$1=$2" --json "$WORK/$1.json"
  printf '%s\t%s\t%s\t%s\n' "$1" "$phase" "$rss_start" "$(rss_mib "$pid")" >>"$WORK/rss.tsv"
  stop
}
for phase in levels prefix noisy; do
  rounds=1
  [[ $phase == levels ]] && rounds=$ROUNDS
  for round in $(seq 1 "$rounds"); do
    if [[ $phase == levels ]]; then
      # The engine's ceiling in the same round: llama.cpp decoding with no server.
      "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p 0 -n 128 -r 5 -o json 2>/dev/null |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["avg_ts"])' >>"$WORK/llama-bench.txt"
    fi
    target/release/aitier serve --port 18080 --threads "$THREADS" --slots "$SLOTS" --ctx-size "$CTX" --metrics-addr off \
      --data-dir "$WORK/aitier-data" --model "smollm2-135m-instruct=$MODEL" \
      >"$WORK/aitier-$phase.log" 2>&1 </dev/null &
    pid=$!
    measure aitier http://127.0.0.1:18080 /ready

    "$PEER" -m "$MODEL" --port 18081 --threads "$THREADS" --threads-batch "$THREADS" -np "$SLOTS" \
      -c $((SLOTS * CTX)) --cont-batching >"$WORK/llama-server-$phase.log" 2>&1 </dev/null &
    pid=$!
    measure llama-server http://127.0.0.1:18081 /health
  done
done

{
  echo "# Scheduler benchmark"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "Both servers: $THREADS threads, $SLOTS slots of $CTX tokens (one KV stream per slot), default model, a fresh server per phase."
  echo "Throughput: median of $ROUNDS alternating rounds, ${PER_WORKER:-2} requests per stream; per-stream tok/s is the median request's tokens after its first over the time after its first."
  echo "Noisy neighbour: ${NN_SECONDS:-30} requests from B alone, then under A; A's streamed tok/s over its first $A_SECONDS s (B's requests start 3 s in)."
  echo
  .venv/bin/python bench/load.py --table "$WORK/aitier.json" "$WORK/llama-server.json" \
    --ceiling "$WORK/llama-bench.txt" --rss "$WORK/rss.tsv"
} > bench/results/scheduler.md
cat bench/results/scheduler.md
