# Sourced (from the repository root) by the bench/run-*.sh scripts that run
# one server at a time: what they all build and install, and the helpers
# that wait for a server to answer and stop it (also on exit).

# The build dependencies, the default model, aitier's release build
# (`-C target-cpu=native` unless RUSTFLAGS says otherwise) and the venv.
bench_prepare() {
  scripts/install-build-deps.sh
  scripts/fetch-model.sh
  RUSTFLAGS="${RUSTFLAGS:--C target-cpu=native}" cargo build --release --locked -p aitier-server --bin aitier
  bench_venv
}

bench_venv() {
  if [[ ! -x .venv/bin/python ]]; then python3 -m venv .venv; fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check httpx
}

# The server started last: `some-server … & pid=$!`.
pid=""
stop() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap stop EXIT
# Polls URL until it answers, for up to a minute.
wait_up() { for _ in $(seq 1 120); do curl -sf "$1" >/dev/null && return 0; sleep 0.5; done; return 1; }
