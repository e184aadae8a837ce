# Sourced (from the repository root) by the bench/run-*.sh scripts that run
# one server at a time: the benchmark venv with httpx, and the helpers that
# wait for a server to answer and stop it (also on exit).

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
