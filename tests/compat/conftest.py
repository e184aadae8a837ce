"""Starts one aitier server for the whole session and hands out clients.

The binary comes from $AITIER_BIN (default: <repo>/target/debug/aitier). It is
started on port 0 and the address is read from the single line it prints on
stdout; its logs (stderr) go to a file whose tail is shown when startup fails.
"""

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "smollm2-135m-instruct"
READY_TIMEOUT_S = 120
REQUEST_TIMEOUT_S = 120
PG_ENV = "AITIER_TEST_POSTGRES_URL"
LISTEN_LINE = re.compile(r"^aitier listening on (https?://\S+)$")
METRICS_LINE = re.compile(r"^aitier metrics on (http://\S+)$")
# SmolLM2's end-of-text and end-of-turn tokens, banned so that a stream runs to max_tokens.
NO_EOS = {"0": -100, "2": -100}


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def _read_first_line(proc: subprocess.Popen, timeout: float) -> str | None:
    """readline() with a deadline, so a server that never prints cannot hang the session."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result else None


@pytest.fixture(scope="session")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("aitier") / "server.log"


class Started(str):
    """A server's base URL, with its metrics listener's `/metrics` URL."""

    metrics: str


def spawn_server(log_path: Path, extra: list[str], verify: str | bool = True) -> tuple[subprocess.Popen, Started]:
    """Starts aitier with `extra` arguments (and a metrics listener on a free
    port) and waits until it is ready; returns the process and its base URL.
    `verify` is how an HTTPS server's certificate is checked. The caller
    stops it."""
    binary = Path(os.environ.get("AITIER_BIN", REPO / "target" / "debug" / "aitier"))
    if not binary.is_file():
        pytest.fail(f"aitier binary not found at {binary} (build it or set AITIER_BIN)")
    log = log_path.open("wb")
    # The engine logs each client-gone cancellation at debug level; test_stream_cancel looks for it.
    env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info,llama-cpp-2=warn"))
    env.pop("AITIER_DATABASE_URL", None)
    env.pop("AITIER_ADMIN_TOKEN", None)
    proc = subprocess.Popen(
        [
            str(binary),
            "serve",
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--metrics-addr",
            "127.0.0.1:0",
            "--models-dir",
            str(REPO / "models"),
            *extra,
        ],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    # The child holds the log open; this handle is not needed past the start.
    log.close()
    try:
        line = _read_first_line(proc, READY_TIMEOUT_S)
        match = LISTEN_LINE.match((line or "").strip())
        if not match:
            pytest.fail(f"server printed {line!r} instead of its address; log tail:\n{_log_tail(log_path)}")
        url = Started(match.group(1))
        line = _read_first_line(proc, READY_TIMEOUT_S)
        metrics = METRICS_LINE.match((line or "").strip())
        if not metrics:
            pytest.fail(f"server printed {line!r} instead of its metrics address; log tail:\n{_log_tail(log_path)}")
        url.metrics = metrics.group(1)
        _wait_ready(proc, url, log_path, verify)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, url


@contextlib.contextmanager
def running_server(log_path: Path, extra: list[str]):
    """Starts aitier with `extra` arguments; yields its base URL; stops it.
    Without a drain grace of its own, it stops without one: nothing
    balances load in front of a test server."""
    if not any(a.startswith("--drain-grace") for a in extra):
        extra = ["--drain-grace", "0s", *extra]
    proc, url = spawn_server(log_path, extra)
    try:
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def base_url(server_log: Path, tmp_path_factory):
    # A data directory of its own: no keys, so the server runs open on loopback.
    data = tmp_path_factory.mktemp("data")
    with running_server(server_log, ["--data-dir", str(data)]) as url:
        yield url


def _wait_ready(proc: subprocess.Popen, url: str, server_log: Path, verify: str | bool = True) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode} while loading; log tail:\n{_log_tail(server_log)}")
        try:
            r = httpx.get(f"{url}/ready", timeout=5, verify=verify)
            last = f"{r.status_code} {r.text}"
            if r.status_code == 200:
                return
            if r.status_code == 503 and r.json().get("status") == "failed":
                pytest.fail(f"model failed to load: {r.text}; log tail:\n{_log_tail(server_log)}")
        except httpx.TransportError as e:
            last = repr(e)
        time.sleep(0.25)
    pytest.fail(f"server not ready after {READY_TIMEOUT_S}s (last /ready: {last}); log tail:\n{_log_tail(server_log)}")


@pytest.fixture(scope="session")
def metrics_url(base_url: Started) -> str:
    return base_url.metrics


@pytest.fixture(scope="session")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)


@pytest.fixture(scope="session")
def http(base_url: str):
    with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as c:
        yield c


@pytest.fixture(scope="session")
def model() -> str:
    return MODEL


def make_key(admin: httpx.Client, tenant: dict) -> str:
    """Creates a tenant through the admin API and returns a new key of it."""
    r = admin.post("/admin/v1/tenants", json=tenant)
    assert r.status_code == 201, r.text
    r = admin.post(f"/admin/v1/tenants/{tenant['name']}/keys")
    assert r.status_code == 201, r.text
    return r.json()["key"]


def key_client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=REQUEST_TIMEOUT_S)


def usage_rows(admin: httpx.Client, tenant: str, expected: int) -> list:
    """The tenant's ledger rows by endpoint, once `expected` requests are
    written (the ledger writes in batches, a moment after each response)."""
    rows: list = []
    for _ in range(100):
        r = admin.get("/admin/v1/usage", params={"tenant": tenant, "group_by": "endpoint"})
        assert r.status_code == 200, r.text
        rows = r.json()["data"]
        if sum(row["requests"] for row in rows) >= expected:
            break
        time.sleep(0.1)
    return rows


def postgres_database() -> str | None:
    """A fresh database on the test PostgreSQL server, or None without one."""
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        print(f"\n!!! SKIPPED: PostgreSQL compat tests need {PG_ENV} (scripts/test.sh starts a server) !!!")
        return None
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to create the test database")
    name = f"c_{uuid.uuid4().hex}"
    subprocess.run(["psql", admin_url, "-qc", f"CREATE DATABASE {name}"], check=True)
    return admin_url.rsplit("/", 1)[0] + "/" + name


def gauge(metrics_url: str, name: str) -> float:
    """The sum of a metric's samples (every label set) in a scrape."""
    total = 0.0
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if not line.startswith("#") and line.split("{", 1)[0].split(" ", 1)[0] == name:
            total += float(line.rsplit(" ", 1)[1])
    return total
