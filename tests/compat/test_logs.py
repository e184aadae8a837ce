"""`--log-format json`: every log line is one JSON object, and lines logged
while a request runs carry its span (request id, method, path)."""

import json
import signal

import httpx

from conftest import MODEL, spawn_server


def test_json_logs_carry_the_request_span(tmp_path, monkeypatch):
    # Debug level: the tenancy database logs each query inside the request's span.
    monkeypatch.setenv("RUST_LOG", "debug,llama-cpp-2=warn")
    log = tmp_path / "server.log"
    proc, url = spawn_server(log, ["--data-dir", str(tmp_path / "data"), "--log-format", "json", "--drain-grace", "0s"])
    try:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            headers={"x-request-id": "json-log-probe-1"},
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
            timeout=60,
        )
        assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert lines and all({"timestamp", "level", "fields", "target"} <= set(line) for line in lines)
    spans = [line["span"] for line in lines if line.get("span", {}).get("request_id") == "json-log-probe-1"]
    assert spans, "no log line carries the request's span"
    assert spans[0]["path"] == "/v1/chat/completions" and spans[0]["method"] == "POST"
