#!/usr/bin/env bash
# The whole test suite: the console's bundle against its sources,
# formatting, lints, Rust unit and integration tests (against the real
# default model, SQLite and a throwaway PostgreSQL), the compatibility
# suite (the real client libraries, and the console in Chromium), and a
# bounded run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-build-deps.sh
scripts/install-test-deps.sh
scripts/fetch-model.sh
scripts/fetch-model.sh gemma
scripts/fetch-model.sh minilm

# One PostgreSQL server for the run; each test makes its own database in it.
# One Redis too; each test keeps its keys under a prefix of its own.
pg_dir="$(mktemp -d)/pg"
redis_dir="$(mktemp -d)/redis"
trap 'scripts/pg-temp.sh stop "$pg_dir"; scripts/redis-temp.sh stop "$redis_dir"; rmdir "$(dirname "$pg_dir")" "$(dirname "$redis_dir")" 2>/dev/null || true' EXIT
if AITIER_TEST_POSTGRES_URL="$(scripts/pg-temp.sh start "$pg_dir")"; then
  export AITIER_TEST_POSTGRES_URL
  echo "== PostgreSQL for tests at $AITIER_TEST_POSTGRES_URL" >&2
else
  unset AITIER_TEST_POSTGRES_URL
  echo "!!! PostgreSQL could not start: its tests will be SKIPPED (see $pg_dir/*.log) !!!" >&2
fi
if AITIER_TEST_REDIS_URL="$(scripts/redis-temp.sh start "$redis_dir")"; then
  export AITIER_TEST_REDIS_URL
  echo "== Redis for tests at $AITIER_TEST_REDIS_URL" >&2
else
  unset AITIER_TEST_REDIS_URL
  echo "!!! Redis could not start: its tests will be SKIPPED (see $redis_dir/redis.log) !!!" >&2
fi

echo "== console bundle: built again from its sources, the same as committed" >&2
scripts/build-console.sh --check

echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
echo "== cargo clippy" >&2
cargo clippy --locked --workspace --all-targets -- -D warnings
echo "== cargo test" >&2
cargo test --locked --workspace

echo "== OpenAI SDK compatibility suite" >&2
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/compat/requirements.txt
echo "== Python binding (bindings/python): the build above, into the test venv" >&2
scripts/install-python-binding.sh .venv
AITIER_BIN="$PWD/target/debug/aitier" .venv/bin/python -m pytest -q tests/compat

echo "== fuzz targets, ${FUZZ_SECONDS:-10} s each" >&2
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
