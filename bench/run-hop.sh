#!/usr/bin/env bash
# The hop, measured: the same model and request in-process, over HTTP to a
# local aitier (loopback, keep-alive), and through a second aitier acting
# as a gateway, one path at a time in one run (crates/aitier-client/benches/hop.rs).
# Writes bench/results/hop.md. Usage: bench/run-hop.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="-C target-cpu=native"
cargo build --release --locked -p aitier-server --bin aitier
cargo bench --locked -p aitier-client --bench hop --no-run
out=bench/.work/hop.md
mkdir -p bench/.work
HOP_ROUNDS="${1:-3}" HOP_AITIER="$PWD/target/release/aitier" \
  cargo bench --locked -p aitier-client --bench hop | tee "$out"
echo "table written to $out; bench/results/hop.md quotes it with the machine and date" >&2
