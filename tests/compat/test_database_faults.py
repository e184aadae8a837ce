"""The tenancy database failing: PostgreSQL down when the service starts,
then killed while streams run. Requests that need it get 503 with a clear
error, the service recovers without a restart when it returns, and no
ledger row is lost or written twice."""

import os
import signal
import subprocess
import tempfile
import threading
import time

import httpx
import openai
import pytest

from conftest import MODEL, PG_ENV, REPO, key_client, spawn_server

ADMIN = "admin-token-for-database-fault-tests"
PG_TEMP = REPO / "scripts" / "pg-temp.sh"
# SmolLM2's end-of-text and end-of-turn tokens, banned so that a stream runs to max_tokens.
NO_EOS = {"0": -100, "2": -100}


def _pg(cmd: str, where: str) -> str:
    return subprocess.run([str(PG_TEMP), cmd, where], check=True, capture_output=True, text=True).stdout.strip()


def _psql(url: str, sql: str) -> list[list[str]]:
    out = subprocess.run(["psql", url, "-AtF", "|", "-c", sql], check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def _gauge(metrics_url: str, name: str) -> float:
    text = httpx.get(metrics_url, timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _until(what: str, check, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s"
        time.sleep(0.2)


@pytest.fixture
def postgres():
    """A PostgreSQL server of the test's own, which it may kill and restart."""
    if not os.environ.get(PG_ENV):
        pytest.skip(f"{PG_ENV} not set: scripts/test.sh starts PostgreSQL when its binaries are installed")
    # Under /tmp: the server's user must reach it, and pytest's folders are private.
    where = os.path.join(tempfile.mkdtemp(), "pg")
    url = _pg("start", where)
    yield where, url
    _pg("stop", where)


def _stream(client: openai.OpenAI, out: list):
    chunks = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count from one to a hundred, in words."}],
        max_tokens=150,
        logit_bias=NO_EOS,
        stream=True,
        stream_options={"include_usage": True},
    )
    out.append([c for c in chunks if c.usage][-1].usage)


def test_the_database_down_at_start_and_killed_mid_run(postgres, tmp_path):
    where, db = postgres
    _pg("pause", where)
    proc, url = spawn_server(tmp_path / "server.log", ["--data-dir", str(tmp_path / "data"), "--database-url", db, "--admin-token", ADMIN])
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    try:
        # Down at start: the service runs, and what needs the database says so.
        anonymous = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-aitier-unknown", max_retries=0, timeout=60)
        with pytest.raises(openai.InternalServerError) as e:
            anonymous.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        assert e.value.status_code == 503
        assert e.value.body["code"] == "auth_unavailable", e.value.body
        r = admin.get("/admin/v1/tenants")
        assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", r.text
        assert "database" in r.json()["error"]["message"]

        # It comes up: the next requests migrate it and are served, no restart.
        _pg("resume", where)
        r = _until("tenant created", lambda: (r := admin.post("/admin/v1/tenants", json={"name": "shop", "budget_tokens": 1_000_000})).status_code == 201 and r)
        key = admin.post("/admin/v1/tenants/shop/keys").json()["key"]
        client = key_client(url, key)
        served = []
        for _ in range(3):
            a = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
            served.append(a.usage)

        # Killed while four streams run: they finish, their rows wait.
        streams: list = []
        threads = [threading.Thread(target=_stream, args=(client, streams)) for _ in range(4)]
        for t in threads:
            t.start()
        _until("streams running", lambda: _gauge(url.metrics, "aitier_sequences_running{") >= 4)
        _pg("pause", where)
        for t in threads:
            t.join(120)
        assert len(streams) == 4, "a stream failed while the database was down"
        assert _gauge(url.metrics, "aitier_ledger_pending") >= 4
        # Meanwhile a new request cannot be checked, and is not run.
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        assert e.value.body["code"] == "auth_unavailable", e.value.body

        # Back: the waiting rows are written, each once, and settle the budget once.
        _pg("resume", where)
        _until("ledger written", lambda: _gauge(url.metrics, "aitier_ledger_pending") == 0, 90)
        a = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        served.append(a.usage)
        served += streams
        _until("last row written", lambda: _gauge(url.metrics, "aitier_ledger_pending") == 0)
        rows = _psql(db, "SELECT row_id, status, prompt_tokens, completion_tokens FROM usage_records")
        assert len(rows) == len(served) == 8, rows
        assert len({r[0] for r in rows}) == 8
        assert all(r[1] == "ok" for r in rows), rows
        assert sorted(int(r[3]) for r in rows) == sorted(u.completion_tokens for u in served)
        billed = sum(int(r[2]) + int(r[3]) for r in rows)
        assert billed == sum(u.prompt_tokens + u.completion_tokens for u in served)
        [[used, reserved]] = _psql(db, "SELECT sum(used), sum(reserved) FROM budget_usage")
        assert (int(used), int(reserved)) == (billed, 0)
        print(f"8 requests, 8 rows, {billed} tokens billed once")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
