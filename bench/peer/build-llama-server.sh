#!/usr/bin/env bash
# Builds the benchmark peers, llama.cpp's own `llama-server` and, beside it,
# `llama-bench` (the engine's ceiling: decoding with no server around it),
# from the llama.cpp sources vendored in the llama-cpp-python source
# distribution (so nothing comes from outside the package registries).
# Prints the server's path; llama-bench is in the same directory.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${BENCH_WORK:-.work}"
[[ "$WORK" = /* ]] && WORK="${WORK#"$PWD"/}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
# Built as aitier builds llama.cpp: native, but without the AMX kernels
# (.cargo/config.toml says why), so that on an AMX host both run the same
# kernels and the peer does not crash on its first batched prompt.
NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
BIN="$PWD/$WORK/llama-cpp-$VERSION-noamx/bin/llama-server"
if [[ -x "$BIN" && -x "$(dirname "$BIN")/llama-bench" ]]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$WORK"
SRC="$WORK/sdist-$VERSION"
if [[ ! -d "$SRC" ]]; then
  python3 -m pip download --quiet --no-deps --no-binary :all: -d "$WORK/dl" "llama-cpp-python==$VERSION" >&2
  mkdir -p "$SRC"
  tar -xzf "$WORK"/dl/llama_cpp_python-"$VERSION".tar.gz -C "$SRC" --strip-components=1
fi
cmake -S "$SRC/vendor/llama.cpp" -B "$WORK/build-$VERSION" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$WORK/build-$VERSION" --target llama-server llama-bench -j "$(nproc)" >&2
mkdir -p "$(dirname "$BIN")"
cp "$WORK/build-$VERSION/bin/llama-server" "$WORK/build-$VERSION/bin/llama-bench" "$(dirname "$BIN")/"
echo "$BIN"
