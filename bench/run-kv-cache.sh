#!/usr/bin/env bash
# The KV cache types side by side, and where the default server's memory
# goes: aitier serving the default chat model at the default 4 slots ×
# 4,096 cells with an f16 cache, a q8_0 one (keys and values), and, for
# the resident memory only, the default `make serve` (the embedding model
# too). One server at a time, ROUNDS alternating rounds; the table shows
# each configuration's last round. Writes bench/.work/kv-cache.md.
# Usage: bench/run-kv-cache.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-2}"
work=bench/.work/kv-cache
mkdir -p "$work"
source bench/common.sh
bench_prepare

serve() { # name, args...
  local name=$1; shift
  rm -rf "$work/data-$name"
  RUST_LOG=warn target/release/aitier serve --port 9311 --metrics-addr off --data-dir "$work/data-$name" "$@" \
    >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 120); do curl -sf http://127.0.0.1:9311/ready >/dev/null && return 0; sleep 0.5; done
  echo "$name did not start: $(tail -5 "$work/$name.log")" >&2; return 1
}
chat="smollm2-135m-instruct=models/SmolLM2-135M-Instruct.Q4_1.gguf"
for round in $(seq 1 "$rounds"); do
  for kv in f16 q8_0; do
    serve "$kv" --model "$chat" --cache-type-k "$kv" --cache-type-v "$kv"
    .venv/bin/python bench/kv_cache.py http://127.0.0.1:9311 "$pid" "$work/$kv.json"
    stop
  done
done
# `make serve`'s configuration: both default models.
serve defaults
defaults_start=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
curl -sf http://127.0.0.1:9311/v1/chat/completions -H 'content-type: application/json' \
  -d '{"model":"smollm2-135m-instruct","messages":[{"role":"user","content":"Hi"}],"max_tokens":8}' >/dev/null
defaults_after=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
stop
{
  .venv/bin/python bench/kv_cache.py --compare "$work/f16.json" "$work/q8_0.json"
  echo
  echo "The default \`make serve\` (SmolLM2 and all-MiniLM-L6-v2, f16 cache): RSS $((defaults_start / 1024)) MiB at start, $((defaults_after / 1024)) MiB after one chat request."
} | tee bench/.work/kv-cache.md
