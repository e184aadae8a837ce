#!/usr/bin/env bash
# What the step target trades: for each --step-target-ms, the noisy-neighbour
# load (bench/load.py --phase noisy) against aitier alone, reporting B's TTFT
# p99 under A's load and the engine's throughput meanwhile (prompt and
# generated tokens per second of decoding, summed from the engine's
# `decode step` trace events). Writes bench/results/step-target.md. Takes ~6
# minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
TARGETS="${TARGETS:-0 100 75 50}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"

scripts/install-build-deps.sh
scripts/fetch-model.sh
cargo build --release --locked -p aitier-server --bin aitier
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check httpx

WORK=bench/.work/step-target
rm -rf "$WORK"
mkdir -p bench/results "$WORK"
pid=""
stop() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap stop EXIT
wait_up() { for _ in $(seq 1 120); do curl -sf "$1" >/dev/null && return 0; sleep 1; done; return 1; }

rows=()
for t in $TARGETS; do
  RUST_LOG=info,aitier_engine=trace target/release/aitier serve --port 18080 --threads "$THREADS" --metrics-addr off \
    --slots 20 --ctx-size 2048 --data-dir "$WORK/data-$t" --step-target-ms "$t" \
    --model "smollm2-135m-instruct=$MODEL" >"$WORK/aitier-$t.log" 2>&1 </dev/null &
  pid=$!
  wait_up http://127.0.0.1:18080/ready
  .venv/bin/python bench/load.py --nn-seconds "${NN_SECONDS:-30}" --phase noisy \
    --target aitier=http://127.0.0.1:18080 --json "$WORK/$t.json"
  stop
  rows+=("$(.venv/bin/python - "$t" "$WORK/$t.json" "$WORK/aitier-$t.log" <<'PY'
import json, re, sys
target, res, log = sys.argv[1], json.load(open(sys.argv[2])), sys.argv[3]
tokens = ms = 0.0
for line in open(log):
    if "decode step" not in line:
        continue
    f = dict(re.findall(r"(\w+)=([\w.]+)", re.sub(r"\x1b\[[0-9;]*m", "", line)))
    # Shared steps of A's load; B's own first-token steps are left out.
    if f.get("short_only") == "false" and int(f["tokens"]) >= 3:
        tokens += int(f["tokens"])
        ms += float(f["ms"])
alone, noisy = res["b_alone"], res["b_noisy"]
print(f"| {target} | {tokens / (ms / 1000):.0f} | {alone[1] * 1000:.0f} | {noisy[1] * 1000:.0f} | "
      f"{noisy[1] / alone[1]:.2f} | {noisy[2]:.1f} |")
PY
)")
done

{
  echo "# Step target: B's latency against the engine's throughput"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "aitier alone, $THREADS threads, 20 slots of 2,048 tokens; the noisy-neighbour load of bench/load.py"
  echo "(A: 16 streams with ~1,500-token prompts; B: one short request per second, ${NN_SECONDS:-30} of them)."
  echo
  echo "| step_target_ms | engine tok/s under A's load | B alone p99 ms | B under A p99 ms | ratio | A's streamed tok/s |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} > bench/results/step-target.md
cat bench/results/step-target.md
