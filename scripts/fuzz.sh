#!/usr/bin/env bash
# The fuzz targets in fuzz/ (libFuzzer through libfuzzer-sys), on the
# stable toolchain: the coverage instrumentation `cargo fuzz` adds is passed
# here as codegen flags, for the fuzzed code only (not build scripts or
# proc macros, hence the explicit --target). No sanitizer: the fuzzed code
# has no unsafe of its own; debug assertions and overflow checks are on.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   each target for SECONDS (30)
#
# Each run starts from the committed corpus (fuzz/corpus/TARGET) in a
# scratch copy; with FUZZ_KEEP=1 the inputs that found new coverage are
# merged back, minimised. A crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/: make it a named regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(api_requests upstream_sse chat_template tool_calls api_keys config)
fi
host=$(rustc -vV | sed -n 's/^host: //p')
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target-dir target/fuzz --target "$host" --bins
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "$scratch/$t"
  cp -r "fuzz/corpus/$t/." "$scratch/$t/"
  echo "== fuzz $t for ${secs}s ($(ls "fuzz/corpus/$t" | wc -l) inputs in the corpus)" >&2
  "target/fuzz/$host/release/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 "$scratch/$t" 2>"$scratch/$t.log" \
    || { tail -60 "$scratch/$t.log" >&2; echo "!!! fuzz target $t failed: see fuzz/artifacts/$t/" >&2; exit 1; }
  grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" "$scratch/$t.log" >&2 || true
  if [[ "${FUZZ_KEEP:-0}" == 1 ]]; then
    mkdir -p "$scratch/$t.min"
    "target/fuzz/$host/release/$t" -set_cover_merge=1 "$scratch/$t.min" "fuzz/corpus/$t" "$scratch/$t" 2>/dev/null
    rm -rf "fuzz/corpus/$t" && mv "$scratch/$t.min" "fuzz/corpus/$t"
  fi
done
