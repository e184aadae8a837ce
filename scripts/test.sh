#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests
# (against the real default model), and the OpenAI SDK compatibility suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
scripts/fetch-model.sh

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --locked --workspace

echo "== OpenAI SDK compatibility suite" >&2
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/compat/requirements.txt
AITIER_BIN="$PWD/target/debug/aitier" .venv/bin/python -m pytest -q tests/compat
