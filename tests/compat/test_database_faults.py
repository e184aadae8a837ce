"""The tenancy database failing: PostgreSQL down when the service starts,
then killed while streams run; SQLite on a disk that fills up. Requests
that need the database get 503 with a clear error, the service recovers
without a restart when it returns, and no ledger row is lost or written
twice."""

import errno
import os
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time

import httpx
import openai
import pytest

from conftest import MODEL, NO_EOS, PG_ENV, REPO, gauge, key_client, running_server, spawn_server

ADMIN = "admin-token-for-database-fault-tests"
PG_TEMP = REPO / "scripts" / "pg-temp.sh"


def _pg(cmd: str, where: str) -> str:
    return subprocess.run([str(PG_TEMP), cmd, where], check=True, capture_output=True, text=True).stdout.strip()


def _psql(url: str, sql: str) -> list[list[str]]:
    out = subprocess.run(["psql", url, "-AtF", "|", "-c", sql], check=True, capture_output=True, text=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


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
        _until("streams running", lambda: gauge(url.metrics, "aitier_sequences_running") >= 4)
        _pg("pause", where)
        for t in threads:
            t.join(120)
        assert len(streams) == 4, "a stream failed while the database was down"
        assert gauge(url.metrics, "aitier_ledger_pending") >= 4
        # Meanwhile a new request cannot be checked, and is not run.
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=1)
        assert e.value.body["code"] == "auth_unavailable", e.value.body

        # Back: the waiting rows are written, each once, and settle the budget once.
        _pg("resume", where)
        _until("ledger written", lambda: gauge(url.metrics, "aitier_ledger_pending") == 0, 90)
        a = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0)
        served.append(a.usage)
        served += streams
        _until("last row written", lambda: gauge(url.metrics, "aitier_ledger_pending") == 0)
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


@pytest.fixture
def small_disk():
    """A 4 MiB tmpfs, so that the test can fill it."""
    where = tempfile.mkdtemp()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", where], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs (the test needs root): {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", where], check=False)
    os.rmdir(where)


def _fill(path: str) -> None:
    """Adds to `path` until not one more byte fits. SQLite gives back what
    a failed write took, so a test keeps the disk full by calling it again."""
    with open(path, "ab", buffering=0) as f:
        for size in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


def test_a_full_disk_refuses_writes_loudly_and_loses_no_row(small_disk, tmp_path):
    """SQLite's disk fills up: answers go on (their rows wait in memory,
    bounded by the ledger queue), a write that does not fit gets 503
    `store_unavailable`, the log says why; once there is room every row is
    written once and the file is intact."""
    data = os.path.join(small_disk, "data")
    log = tmp_path / "server.log"
    with running_server(log, ["--data-dir", data, "--admin-token", ADMIN]) as url:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        hi = lambda: client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        for _ in range(3):
            hi()
        _until("rows written", lambda: gauge(url.metrics, "aitier_ledger_pending") == 0)
        # SQLite writes into its write-ahead log, which keeps its size after
        # a checkpoint: empty it first, so that a write needs new room.
        with sqlite3.connect(os.path.join(data, "aitier.db")) as db:
            assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
        filler = os.path.join(small_disk, "filler")
        for _ in range(6):
            _fill(filler)
            hi()
        _fill(filler)
        # A failed write leaves its room in the log, where a smaller one may
        # fit later; this one is larger than any batch of six rows.
        big = {"name": "full", "models": [f"model-{i:05}-{'x' * 30}" for i in range(2000)]}
        r = admin.post("/admin/v1/tenants", json=big)
        assert r.status_code == 503, r.text[:300]
        assert r.json()["error"]["code"] == "store_unavailable"
        assert gauge(url.metrics, "aitier_ledger_pending") >= 1
        assert "database or disk is full" in log.read_text()
        assert gauge(url.metrics, "aitier_ledger_write_failures_total") >= 1
        os.remove(filler)
        _until("rows written after the disk has room", lambda: gauge(url.metrics, "aitier_ledger_pending") == 0, 30)
        r = admin.post("/admin/v1/tenants", json=big)
        assert r.status_code == 201, r.text[:300]
    with sqlite3.connect(os.path.join(data, "aitier.db")) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*), count(DISTINCT row_id) FROM usage_records").fetchone() == (9, 9)
