#!/usr/bin/env bash
# Runs aitier on the embedded default models (a chat model and an embedding
# model), installing what it needs first.
# Extra arguments go to `aitier serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
scripts/fetch-model.sh
scripts/fetch-model.sh minilm
# Built for this machine's CPU on purpose: llama.cpp decodes ~14% faster.
export RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}"
cargo build --release --locked -p aitier-server --bin aitier
exec target/release/aitier serve "$@"
