#!/usr/bin/env bash
# Builds the benchmark peer, llama.cpp's own `llama-server`, from the llama.cpp
# sources vendored in the llama-cpp-python source distribution (so nothing
# comes from outside the package registries). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${BENCH_WORK:-.work}"
[[ "$WORK" = /* ]] && WORK="${WORK#"$PWD"/}"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
BIN="$PWD/$WORK/llama-server-$VERSION/bin/llama-server"
if [[ -x "$BIN" ]]; then
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
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$WORK/build-$VERSION" --target llama-server -j "$(nproc)" >&2
mkdir -p "$(dirname "$BIN")"
cp "$WORK/build-$VERSION/bin/llama-server" "$BIN"
echo "$BIN"
