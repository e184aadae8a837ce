#!/usr/bin/env bash
# Where a single stream's decode time goes, one layer at a time, in one run:
# llama-bench tg128 (the engine's ceiling), a bare llama_decode loop under
# llama-bench's context settings and under aitier's, aitier's engine worker
# in-process (sampling, detokenising, events), aitier over HTTP, and
# llama-server over HTTP. Same model, same threads; ROUNDS alternating
# rounds, the median of each. Then the cost of one step of 8 decoding
# sequences, alone and beside a 64-token prompt chunk, with a KV stream per
# sequence against one unified stream. Writes bench/results/decode-cost.md.
# Usage: bench/run-decode-cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
THREADS="${THREADS:-$(nproc)}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
work=bench/.work/decode-cost
mkdir -p "$work" bench/results

export RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}"
source bench/common.sh
bench_prepare
cargo build --release --locked -p aitier-engine --example decode_cost
PEER="$(bench/peer/build-llama-server.sh)"
LLAMA_BENCH="$(dirname "$PEER")/llama-bench"

# ms per token from single_stream.py's median decode rate.
http_ms() { .venv/bin/python bench/single_stream.py "$1" --runs 3 | awk '/decode tok\/s/ {printf "%.3f\n", 1000/$4}'; }

out="$work/samples.tsv"
: >"$out"
for round in $(seq 1 "$rounds"); do
  "$LLAMA_BENCH" -m "$MODEL" -t "$THREADS" -p 0 -n 128 -r 3 -o json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)[0]; print("llama-bench tg128\t%.3f" % (1000/r["avg_ts"]))' >>"$out"
  target/release/examples/decode_cost bare 128 2>/dev/null >>"$out"
  target/release/examples/decode_cost worker 128 2>/dev/null >>"$out"
  target/release/aitier serve --port 18080 --threads "$THREADS" --metrics-addr off \
    --data-dir "$work/aitier-data" --model "smollm2-135m-instruct=$MODEL" >"$work/aitier.log" 2>&1 </dev/null &
  pid=$!
  wait_up http://127.0.0.1:18080/ready
  printf 'aitier over HTTP (SSE)\t%s\n' "$(http_ms http://127.0.0.1:18080)" >>"$out"
  stop
  "$PEER" -m "$MODEL" --port 18081 --threads "$THREADS" --threads-batch "$THREADS" -np 4 -c 16384 \
    >"$work/llama-server.log" 2>&1 </dev/null &
  pid=$!
  wait_up http://127.0.0.1:18081/health
  printf 'llama-server over HTTP (SSE)\t%s\n' "$(http_ms http://127.0.0.1:18081)" >>"$out"
  stop
  target/release/examples/decode_cost layouts 2>/dev/null >>"$out"
done

python3 - "$out" "$rounds" "$THREADS" >bench/results/decode-cost.md <<'EOF'
import statistics, subprocess, sys
from collections import OrderedDict
path, rounds, threads = sys.argv[1], sys.argv[2], sys.argv[3]
rows = OrderedDict()
for line in open(path):
    name, ms, *_ = line.rstrip("\n").split("\t")
    rows.setdefault(name, []).append(float(ms))
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
date = subprocess.run(["date", "-u", "+%Y-%m-%d"], capture_output=True, text=True).stdout.strip()
print("# Decode cost: where a single stream's time goes\n")
print(f"{date}, {threads} threads, {cpu}, SmolLM2-135M-Instruct Q4_1, release build with")
print(f"`-C target-cpu=native`; median of {rounds} alternating rounds (`bench/run-decode-cost.sh`).\n")
print("## One stream, 128 greedy tokens\n")
print("| path | ms per token | tok/s | × llama-bench's time |")
print("|---|---:|---:|---:|")
base = statistics.median(rows["llama-bench tg128"])
for name, v in rows.items():
    if name.startswith(("decode step", "mixed step")):
        continue
    m = statistics.median(v)
    label = name.replace("bare ", "llama_decode loop, ", 1).replace("worker", "aitier's engine worker, in-process")
    print(f"| {label} | {m:.2f} | {1000/m:.1f} | {m/base:.2f} |")
print("\nEach round's ms per token, in order:\n")
for name, v in rows.items():
    print(f"- {name}: " + ", ".join(f"{x:.2f}" for x in v))
print("\n## One step of 8 sequences (512-token contexts) decoding one token each\n")
print("| step | KV layout | ms |")
print("|---|---|---:|")
for name, v in rows.items():
    if name.startswith(("decode step", "mixed step")):
        kind, layout = name.split(", ", 1)
        label = kind if kind == "decode step" else "mixed step (+ a 64-token prompt chunk)"
        print(f"| {label} | {layout} | {statistics.median(v):.1f} |")
EOF
cat bench/results/decode-cost.md
