#!/usr/bin/env bash
# Embeddings benchmark: aitier vs llama.cpp's llama-server (--embeddings) on
# the default embedding model's GGUF, same threads, measured in one run; then
# aitier's chat TTFT alone and beside full embedding load. Writes
# bench/results/embeddings.md. Takes ~25 minutes on 2 cores (plus the
# peer's first build).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-$(nproc)}"
ROUNDS="${ROUNDS:-5}"
SECONDS_PER_LEVEL="${SECONDS_PER_LEVEL:-10}"
MODEL="models/all-MiniLM-L6-v2.F32.gguf"

scripts/install-build-deps.sh
scripts/fetch-model.sh
scripts/fetch-model.sh minilm
PEER="$(bench/peer/build-llama-server.sh)"
RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}" cargo build --release --locked -p aitier-server --bin aitier
if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check httpx

WORK=bench/.work
mkdir -p bench/results "$WORK"
OUT="$WORK/embeddings.json"
rm -f "$OUT"
pids=()
stop() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done; pids=(); }
trap stop EXIT
wait_up() { for _ in $(seq 1 120); do curl -sf "$1" >/dev/null && return 0; sleep 1; done; return 1; }
# aitier on PORT with its defaults, or CONFIG (a file) instead.
aitier() {
  target/release/aitier serve --port "$1" --threads "$THREADS" --models-dir models --metrics-addr off \
    --data-dir "$WORK/aitier-data-$1" ${2:+--config "$2"} >"$WORK/aitier-embed-$1.log" 2>&1 </dev/null &
  pids+=($!)
  wait_up "http://127.0.0.1:$1/ready"
}
# The same two models with the embedding engine at normal CPU priority.
FOREGROUND="$WORK/foreground.toml"
cat >"$FOREGROUND" <<EOF
[[models]]
name = "smollm2-135m-instruct"
path = "$PWD/models/SmolLM2-135M-Instruct.Q4_1.gguf"

[[models]]
name = "all-minilm-l6-v2"
kind = "embedding"
path = "$PWD/$MODEL"
background = false
EOF

# All three servers up at once, one loaded at a time (an idle one takes no
# CPU): every level measures each in turn, so this machine's drifting speed
# reaches them alike. Both servers pass at most 512 tokens at once through
# the model, with flash attention on (llama-server leaves it off for this
# model unless told); llama-server takes up to 16 inputs at a time (its
# slots of 256 tokens), aitier up to 64. aitier runs twice: with its
# defaults (the embedding engine at background CPU priority) and with the
# embedding engine at normal priority, like llama-server.
rm -rf "$WORK"/aitier-data-*
aitier 18080
aitier 18082 "$FOREGROUND"
"$PEER" -m "$MODEL" --embeddings --port 18081 --threads "$THREADS" --threads-batch "$THREADS" \
  -np 16 -c 4096 -b 512 -ub 512 -fa on >"$WORK/llama-server-embed.log" 2>&1 </dev/null &
pids+=($!)
wait_up http://127.0.0.1:18081/health
load() { .venv/bin/python bench/embed_load.py --json "$OUT" --seconds "$SECONDS_PER_LEVEL" "$@"; }
load --rounds "$ROUNDS" --targets "aitier=http://127.0.0.1:18080" \
  "aitier background=false=http://127.0.0.1:18082" "llama-server=http://127.0.0.1:18081"
load --ttft "aitier=http://127.0.0.1:18080"
load --ttft "aitier background=false=http://127.0.0.1:18082"
stop

{
  echo "# Embeddings benchmark"
  echo
  echo "$(date -u +%Y-%m-%d), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)."
  echo "all-MiniLM-L6-v2 (F32 GGUF), $THREADS threads on both servers; llama-server with 16 slots of 256 tokens,"
  echo "512-token batches and flash attention, aitier with its defaults (64 inputs, 512 tokens a batch),"
  echo "then the same with the embedding engine at normal CPU priority (background = false)."
  echo "Each level: C clients sending requests of K inputs back to back for ${SECONDS_PER_LEVEL} s, each server in turn;"
  echo "$ROUNDS rounds, the first server rotating; the median of the rounds (ratios: the median of the rounds' ratios)."
  echo "Inputs: the 30 reference sentences of tests/fixtures/embeddings in turn (3 to 256 tokens, ~29 on average)."
  echo
  .venv/bin/python bench/embed_load.py --table "$OUT" --rounds "$ROUNDS"
  echo
  echo "Chat TTFT: 100 sequential streamed chat requests (0.2 s apart) to the default chat model, alone, then while"
  echo "16 clients (another process) send 32-input embedding requests to the embedding model of the same server, for"
  echo "each of aitier's two settings."
} > bench/results/embeddings.md
cat bench/results/embeddings.md
