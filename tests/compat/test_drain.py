"""Graceful drain: SIGTERM turns /ready to 503 at once, refuses new
connections after the grace, lets streams in flight finish (or cuts them,
with an error event, at the drain timeout), writes every ledger row, and
exits 0; a second signal exits at once."""

import json
import signal
import sqlite3
import threading
import time

import httpx
import pytest

from conftest import MODEL, NO_EOS, spawn_server


class Stream(threading.Thread):
    """One streamed chat completion, read as raw SSE."""

    def __init__(self, url: str, max_tokens: int):
        super().__init__(daemon=True)
        self.url = url
        self.max_tokens = max_tokens
        self.started = threading.Event()
        self.tokens = 0
        self.finish_reason = None
        self.usage = None
        self.error = None
        self.done = False
        self.failure = None

    def run(self):
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": "Count from one to a thousand, in words."}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "logit_bias": NO_EOS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        try:
            with httpx.stream("POST", f"{self.url}/v1/chat/completions", json=body, timeout=120) as r:
                assert r.status_code == 200, r.read()
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[len("data: ") :]
                    if data == "[DONE]":
                        self.done = True
                        continue
                    event = json.loads(data)
                    if "error" in event:
                        self.error = event["error"]
                        continue
                    if event.get("usage"):
                        self.usage = event["usage"]
                    for choice in event.get("choices", []):
                        if choice["delta"].get("content"):
                            self.tokens += 1
                            self.started.set()
                        if choice.get("finish_reason"):
                            self.finish_reason = choice["finish_reason"]
        except Exception as e:  # reported by the test, not lost in the thread
            self.failure = e
        finally:
            self.started.set()


def ledger(data_dir) -> list[tuple]:
    with sqlite3.connect(data_dir / "aitier.db") as db:
        return db.execute("SELECT status, completion_tokens, finish_reason FROM usage_records").fetchall()


def kill_if_running(proc) -> None:
    """After a failed assertion: no server outlives its test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def start_streams(url: str, n: int, max_tokens: int) -> list[Stream]:
    streams = [Stream(url, max_tokens) for _ in range(n)]
    for s in streams:
        s.start()
    for s in streams:
        assert s.started.wait(120), "no stream started"
        assert s.failure is None, s.failure
    return streams


def test_drain_lets_streams_finish_and_writes_every_row(tmp_path):
    data = tmp_path / "data"
    grace = 1.0
    proc, url = spawn_server(
        tmp_path / "server.log",
        ["--data-dir", str(data), "--drain-grace", f"{grace}s", "--drain-timeout", "300s"],
    )
    try:
        streams = start_streams(url, 4, max_tokens=400)
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        # Not ready at once, though the listener still accepts.
        for _ in range(50):
            r = httpx.get(f"{url}/ready", timeout=5)
            if r.status_code == 503:
                break
            time.sleep(0.02)
        assert r.status_code == 503 and r.json() == {"status": "draining"}, r.text
        assert httpx.get(f"{url}/health", timeout=5).status_code == 200
        # After the grace, no new connection.
        time.sleep(max(0.0, signalled + grace + 0.5 - time.monotonic()))
        running = [s for s in streams if s.is_alive()]
        assert len(running) == len(streams), "streams ended before the grace did; make them longer"
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=5)
        for s in streams:
            s.join(180)
        assert proc.wait(timeout=120) == 0
        drained_s = time.monotonic() - signalled
    finally:
        kill_if_running(proc)
    for s in streams:
        assert s.failure is None, s.failure
        assert s.error is None, s.error
        assert s.done and s.finish_reason == "length"
        assert s.usage["completion_tokens"] == 400
    rows = ledger(data)
    assert sorted(rows) == [("ok", 400, "length")] * 4, rows
    print(f"drained 4 streams of 400 tokens in {drained_s:.1f} s after SIGTERM")


def test_drain_timeout_cuts_streams_with_an_error_and_bills_them(tmp_path):
    data = tmp_path / "data"
    proc, url = spawn_server(
        tmp_path / "server.log",
        ["--data-dir", str(data), "--drain-grace", "0s", "--drain-timeout", "1s"],
    )
    try:
        # Far longer than the timeout: these are cut.
        streams = start_streams(url, 2, max_tokens=3000)
        proc.send_signal(signal.SIGTERM)
        for s in streams:
            s.join(180)
        assert proc.wait(timeout=120) == 0
    finally:
        kill_if_running(proc)
    for s in streams:
        assert s.failure is None, s.failure
        assert s.error is not None and s.error["code"] == "shutting_down", s.error
        assert not s.done and s.finish_reason is None
    rows = ledger(data)
    assert len(rows) == 2, rows
    received = sorted(s.tokens for s in streams)
    # Each cut stream is billed for what it was sent, at least.
    for (status, completion, finish), got in zip(sorted(rows, key=lambda r: r[1]), received):
        assert status == "cancelled" and finish is None
        assert 0 < got <= completion < 3000


def test_second_signal_exits_at_once(tmp_path):
    proc, url = spawn_server(
        tmp_path / "server.log",
        ["--data-dir", str(tmp_path / "data"), "--drain-grace", "300s", "--drain-timeout", "600s"],
    )
    try:
        streams = start_streams(url, 1, max_tokens=3000)
        proc.send_signal(signal.SIGTERM)
        for _ in range(50):
            if httpx.get(f"{url}/ready", timeout=5).status_code == 503:
                break
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        # A drain would take 300 s; the second signal ends it with 130.
        assert proc.wait(timeout=60) == 130
    finally:
        kill_if_running(proc)
    streams[0].join(30)
    assert not streams[0].done
