#!/usr/bin/env bash
# Constrained decoding: JSON-Schema-constrained against unconstrained decode
# tokens/s at 1 and 8 streams on the default model, and the per-token mask
# time, in one run on one server. Writes bench/results/constrained.md. Takes
# ~5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
MODEL="models/SmolLM2-135M-Instruct.Q4_1.gguf"

scripts/install-build-deps.sh
scripts/fetch-model.sh
cargo build --release --locked -p aitier-server --bin aitier
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check httpx

WORK=bench/.work/constrained
rm -rf "$WORK"
mkdir -p bench/results "$WORK"
target/release/aitier serve --port 18080 --threads "$THREADS" --slots 8 --ctx-size 1024 --metrics-addr off --metrics-on-api \
  --data-dir "$WORK/data" --model "smollm2-135m-instruct=$MODEL" >"$WORK/aitier.log" 2>&1 </dev/null &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
for _ in $(seq 1 120); do curl -sf http://127.0.0.1:18080/ready >/dev/null && break; sleep 1; done
.venv/bin/python bench/constrained.py --url http://127.0.0.1:18080 --rounds "${ROUNDS:-3}" --out "$WORK/table.md"
{
  echo "# Constrained decoding"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $THREADS threads, 8 slots, SmolLM2-135M Q4_1 (49,152-token vocabulary)."
  echo "Each request decodes exactly 128 tokens (end of text banned); the constrained ones follow a"
  echo "JSON Schema (an object holding an array of 64 strings). Tokens/s is the median of ${ROUNDS:-3}"
  echo "alternating rounds; the mask time is llguidance's, per constrained token, from"
  echo "\`aitier_grammar_mask_microseconds_total\` / \`aitier_grammar_masks_total\`, computed beside the decode."
  echo
  cat "$WORK/table.md"
} > bench/results/constrained.md
cat bench/results/constrained.md
