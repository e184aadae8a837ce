"""Faults a client can cause: headers or a body trickled a byte at a time
(slowloris) are cut after `--read-timeout`, while other clients are served;
a thousand idle connections cost little and are closed; a client that
stops reading a stream is cut after `--write-timeout` and its sequence
freed; SIGKILL under load leaves the SQLite ledger intact, losing only rows
not yet written (none of a received answer with `--ledger-sync`)."""

import json
import os
import signal
import socket
import sqlite3
import threading
import time
from urllib.parse import urlsplit

import httpx
import openai

from conftest import MODEL, NO_EOS, gauge, running_server, spawn_server

READ_TIMEOUT_S = 2
# Far past the read timeout: a connection still open then was never cut.
GIVE_UP_S = 30


def _trickle(address, head: bytes, drip: bytes, result: dict) -> None:
    """Sends `head`, then `drip` a byte at a time until the server answers or
    closes; records what came back and after how long."""
    start = time.monotonic()
    with socket.create_connection(address, timeout=1) as s:
        s.sendall(head)
        answer = b""
        i = 0
        while time.monotonic() - start < GIVE_UP_S:
            try:
                s.sendall(drip[i % len(drip):][:1])
                i += 1
            except OSError:
                break
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
        result["answer"] = answer
        result["seconds"] = time.monotonic() - start


def test_trickled_headers_and_bodies_are_cut_and_others_are_served(tmp_path):
    args = ["--data-dir", str(tmp_path / "data"), "--read-timeout", f"{READ_TIMEOUT_S}s"]
    with running_server(tmp_path / "server.log", args) as url:
        where = urlsplit(url)
        address = (where.hostname, where.port)
        headers, body = {}, {}
        request = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
        slow = [
            threading.Thread(target=_trickle, args=(address, b"POST /v1/chat/completions HTTP/1.1\r\n", b"X-Slow: a\r\n", headers)),
            threading.Thread(
                target=_trickle,
                args=(
                    address,
                    f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(request)}\r\n\r\n".encode(),
                    request.encode(),
                    body,
                ),
            ),
        ]
        for t in slow:
            t.start()
        # Meanwhile, everyone else is served.
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        for _ in range(3):
            assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        for t in slow:
            t.join(GIVE_UP_S + 10)
    print(f"headers cut after {headers['seconds']:.1f} s, body after {body['seconds']:.1f} s")
    assert headers["seconds"] < GIVE_UP_S, "trickled headers were never cut"
    # hyper closes the connection without an answer, or with a bare 408.
    assert not headers["answer"] or headers["answer"].startswith(b"HTTP/1.1 408"), headers["answer"][:200]
    assert body["seconds"] < GIVE_UP_S, "a trickled body was never cut"
    status, _, rest = body["answer"].partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", body["answer"][:300]
    head, _, payload = rest.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert json.loads(payload)["error"]["code"] == "request_timeout"


def _rss_and_fds(pid: int) -> tuple[int, int]:
    status = open(f"/proc/{pid}/status").read()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kib * 1024, len(os.listdir(f"/proc/{pid}/fd"))


def test_a_thousand_idle_connections_cost_little_and_are_closed(tmp_path):
    """Half the connections never send a byte, half sent one request and
    keep the connection alive: together they take a bounded amount of
    memory, the server answers meanwhile, and the read timeout closes them
    (their descriptors and runtime tasks are given back)."""
    n = 1000
    args = ["--data-dir", str(tmp_path / "data"), "--read-timeout", f"{READ_TIMEOUT_S}s", "--drain-grace", "0s"]
    proc, url = spawn_server(tmp_path / "server.log", args)
    where = urlsplit(url)
    address = (where.hostname, where.port)
    sockets = []
    try:
        rss_before, fds_before = _rss_and_fds(proc.pid)
        tasks_before = gauge(url.metrics, "aitier_runtime_tasks")
        for i in range(n):
            s = socket.create_connection(address, timeout=10)
            if i % 2:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert s.recv(65536).startswith(b"HTTP/1.1 200")
            sockets.append(s)
        rss_during, fds_during = _rss_and_fds(proc.pid)
        assert fds_during >= fds_before + n * 0.9, (fds_before, fds_during)
        tasks_during = gauge(url.metrics, "aitier_runtime_tasks")
        assert tasks_during >= tasks_before + n * 0.9, (tasks_before, tasks_during)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
        # Within 64 KiB a connection.
        grown = rss_during - rss_before
        print(f"{n} idle connections: RSS +{grown / 2**20:.1f} MiB, fds {fds_before} -> {fds_during}")
        assert grown < n * 64 * 1024, grown
        # Every one is closed by the server: each socket reads end-of-file.
        deadline = time.monotonic() + GIVE_UP_S
        for s in sockets:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            assert s.recv(1) == b"", "an idle connection was not closed"
        _, fds_after = _rss_and_fds(proc.pid)
        assert fds_after < fds_before + 20, (fds_before, fds_after)
        # Their tasks are gone too.
        tasks_after = gauge(url.metrics, "aitier_runtime_tasks")
        print(f"runtime tasks {tasks_before:.0f} -> {tasks_during:.0f} -> {tasks_after:.0f}")
        assert tasks_after < tasks_before + 20, (tasks_before, tasks_after)
    finally:
        for s in sockets:
            s.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


WRITE_TIMEOUT_S = 2


def test_a_client_that_stops_reading_is_cut_and_its_sequences_freed(tmp_path):
    """A client asks for four long streams on one connection and never reads
    a byte: once the socket's buffers are full (the kernel's send buffer
    grows to 4 MiB, so each chunk carries 20 log-probabilities to fill it
    within seconds rather than minutes) the server can send nothing,
    and after `--write-timeout` it closes the connection, which stops the
    sequences (their cache cells come back) and bills what was generated.
    Without the write timeout the answer waited in the socket for ever,
    holding the request's ledger row and its tenant's concurrency."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--write-timeout", f"{WRITE_TIMEOUT_S}s", "--drain-grace", "0s"]
    proc, url = spawn_server(tmp_path / "server.log", args)
    where = urlsplit(url)
    max_tokens = 2000
    body = json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count from one to a thousand, in words."}],
            "max_tokens": max_tokens,
            "n": 4,
            "logprobs": True,
            "top_logprobs": 20,
            "logit_bias": NO_EOS,
            "stream": True,
        }
    ).encode()
    s = socket.socket()
    # The smallest receive window the kernel allows: the server's sends stall soon.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.connect((where.hostname, where.port))
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        # The usage row appears once the request has ended, i.e. once it was cut.
        deadline = time.monotonic() + 120
        rows = []
        while not rows and time.monotonic() < deadline:
            time.sleep(0.5)
            with sqlite3.connect(data / "aitier.db") as db:
                rows = db.execute("SELECT status, completion_tokens FROM usage_records").fetchall()
        assert rows, "the stream that nobody read never ended"
        [(status, completion)] = rows
        print(f"cut after {completion} of {4 * max_tokens} tokens, status {status}")
        assert status == "cancelled"
        assert 0 < completion < 4 * max_tokens
        # Its sequences are gone (their slots keep only a reusable prefix).
        assert gauge(url.metrics, "aitier_sequences_running") == 0
        # The server closed the connection: what was buffered, then the end.
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        # Others are served, four sequences at once.
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
        answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2, n=4)
        assert len(answer.choices) == 4
    finally:
        s.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


class _Load(threading.Thread):
    """Requests one after another until the server dies: short answers, or
    streams, each remembered by its request id once received whole."""

    def __init__(self, url: str, stream: bool):
        super().__init__(daemon=True)
        self.url, self.stream = url, stream
        self.received: list[str] = []

    def run(self):
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 12 if self.stream else 4}
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while True:
                try:
                    if self.stream:
                        with http.stream("POST", "/v1/chat/completions", json=dict(body, stream=True)) as r:
                            lines = list(r.iter_lines())
                            whole = r.status_code == 200 and "data: [DONE]" in lines
                    else:
                        r = http.post("/v1/chat/completions", json=body)
                        whole = r.status_code == 200 and r.json()["choices"]
                except (httpx.HTTPError, ValueError):
                    return
                if whole:
                    self.received.append(r.headers["x-request-id"])


def _killed_during_load(tmp_path, extra: list[str]) -> tuple[set, set]:
    """Kills the server with SIGKILL under load; returns the request ids
    clients received whole, and those the ledger holds. Checks the database
    is intact and serves again after a restart."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--drain-grace", "0s", *extra]
    proc, url = spawn_server(tmp_path / "server.log", args)
    load = [_Load(url, stream=i % 2 == 1) for i in range(6)]
    for t in load:
        t.start()
    deadline = time.monotonic() + 120
    while sum(len(t.received) for t in load) < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    for t in load:
        t.join(30)
    received = {rid for t in load for rid in t.received}
    db = data / "aitier.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        written = {rid for (rid,) in conn.execute("SELECT request_id FROM usage_records")}
    # Started again on the same files: it serves and its ledger goes on.
    with running_server(tmp_path / "again.log", args) as again:
        client = openai.OpenAI(base_url=f"{again}/v1", api_key="unused", max_retries=0, timeout=60)
        assert client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM usage_records").fetchone()[0] == len(written) + 1
    return received, written


def test_sigkill_under_load_keeps_the_ledger_whole_with_ledger_sync(tmp_path):
    """With --ledger-sync an answer's end goes out only after its row is
    written: SIGKILL loses no row of an answer a client received. Rows of
    answers cut by the kill may be there too (written, not yet sent)."""
    received, written = _killed_during_load(tmp_path, ["--ledger-sync"])
    print(f"ledger sync: {len(received)} answers received whole, {len(written)} rows, {len(received - written)} lost")
    assert len(received) >= 60
    assert received <= written, f"{len(received - written)} rows lost"
    assert len(written - received) <= 6, "at most one row per client cut mid-answer"


def test_sigkill_under_load_loses_at_most_the_rows_not_yet_written(tmp_path):
    """By default rows are written a moment after their answers, in batches:
    SIGKILL loses those still queued, and nothing else; the file is intact."""
    received, written = _killed_during_load(tmp_path, [])
    lost = received - written
    print(f"batched: {len(received)} answers received whole, {len(written)} rows, {len(lost)} lost")
    assert len(received) >= 60
    # A row waits ~20 ms before its batch is written, less than an answer
    # takes: each of the six clients has an unwritten row or two at most.
    assert len(lost) <= 12, f"{len(lost)} rows lost"
    assert len(written - received) <= 6
