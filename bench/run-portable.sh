#!/usr/bin/env bash
# What the portable build costs: aitier built for x86-64-v3 (AVX2, FMA,
# F16C; what the Dockerfile builds, so an image runs on any such host)
# against `-C target-cpu=native` (what `make serve` and the benchmarks
# build), same model and threads, ROUNDS alternating rounds, a fresh server
# per measurement: one stream's decode tok/s (bench/single_stream.py, 128
# greedy tokens), its time to first token on a short cold prompt, and the
# cold time to first token of a ~800-token prompt (bench/load.py's prefix
# phase). The portable build goes to target/portable. Writes
# bench/results/portable.md.
# Usage: bench/run-portable.sh [ROUNDS] (even, for a balanced order)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-4}"
THREADS="${THREADS:-$(nproc)}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"
work=bench/.work/portable
mkdir -p "$work" bench/results

source bench/common.sh
RUSTFLAGS="-C target-cpu=native" bench_prepare
RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR=target/portable \
  cargo build --release --locked -p aitier-server --bin aitier


out="$work/samples.tsv"
: >"$out"
for round in $(seq 1 "$rounds"); do
  # Which build goes first alternates, so a machine warming up or slowing
  # down within a round favours neither.
  order="native portable"
  (( round % 2 == 0 )) && order="portable native"
  for build in $order; do
    bin=target/release/aitier
    [[ "$build" == portable ]] && bin=target/portable/release/aitier
    rm -rf "$work/data"
    "$bin" serve --port 18080 --threads "$THREADS" --metrics-addr off --data-dir "$work/data" \
      --model "smollm2-135m-instruct=$MODEL" >"$work/$build.log" 2>&1 </dev/null &
    pid=$!
    wait_up http://127.0.0.1:18080/ready
    url=http://127.0.0.1:18080
    .venv/bin/python bench/single_stream.py "$url" --runs 3 |
      awk -v b="$build" '/decode tok\/s/ {sub(",", "", $4); print b "\tdecode tok/s\t" $4}' >>"$out"
    .venv/bin/python bench/single_stream.py "$url" --runs 3 --cold --max-tokens 8 |
      awk -v b="$build" '/TTFT ms/ {sub(",", "", $4); print b "\tshort cold TTFT ms\t" $4}' >>"$out"
    .venv/bin/python bench/load.py --phase prefix --target "$build=$url" --json "$work/prefix.json" |
      awk -v b="$build" '/prefix cache/ {print b "\t~800-token cold TTFT ms\t" $5}' >>"$out"
    stop
  done
done

python3 - "$out" "$rounds" "$THREADS" >bench/results/portable.md <<'PY'
import statistics, subprocess, sys
from collections import defaultdict
path, rounds, threads = sys.argv[1:]
v = defaultdict(list)
for line in open(path):
    build, metric, x = line.rstrip("\n").split("\t")
    v[(metric, build)].append(float(x))
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
date = subprocess.run(["date", "-u", "+%Y-%m-%d"], capture_output=True, text=True).stdout.strip()
print("# The portable build against the native one\n")
print(f"{date}, {cpu}, {threads} threads, SmolLM2-135M-Instruct Q4_1; `-C target-cpu=native` against")
print(f"`-C target-cpu=x86-64-v3` (the Dockerfile's build), medians of {rounds} rounds, each build first in half of them, a fresh")
print("server per measurement (`bench/run-portable.sh`).\n")
print("| measure | native | x86-64-v3 | portable / native |")
print("|---|---:|---:|---:|")
for metric in ("decode tok/s", "short cold TTFT ms", "~800-token cold TTFT ms"):
    n, p = statistics.median(v[(metric, "native")]), statistics.median(v[(metric, "portable")])
    print(f"| {metric} | {n:.1f} | {p:.1f} | {p / n:.2f} |")
print("\nEach round, native / x86-64-v3:\n")
for metric in ("decode tok/s", "short cold TTFT ms", "~800-token cold TTFT ms"):
    pairs = ", ".join(f"{a:.1f} / {b:.1f}" for a, b in zip(v[(metric, "native")], v[(metric, "portable")]))
    print(f"- {metric}: {pairs}")
PY
cat bench/results/portable.md
