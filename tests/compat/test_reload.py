"""Hot reload and model load/unload: SIGHUP and POST /admin/v1/reload apply
a changed configuration (a model added, one replaced while a stream runs on
it, an alias removed, fallbacks changed) without dropping a connection; a
bad configuration is refused and the running one stays; the admin API
unloads and loads a model."""

import json
import signal
import threading
import time

import httpx
import pytest

from conftest import NO_EOS, REPO, spawn_server

ADMIN = "admin-token-for-reload-tests-0001"
GGUF = REPO / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def config(*, slots: int, extra_model: bool, alias: bool, fallback: bool = False) -> str:
    text = f'[engine]\nctx_size = 1024\n\n[[models]]\nname = "smol"\npath = "{GGUF}"\nslots = {slots}\n'
    if alias:
        text += 'aliases = ["smol-alias"]\n'
    if extra_model:
        text += f'\n[[models]]\nname = "smol2"\npath = "{GGUF}"\nslots = 1\n'
        if fallback:
            text += 'fallbacks = ["smol"]\n'
    return text


def kv_cells(metrics_url: str, model: str) -> int | None:
    for line in httpx.get(metrics_url, timeout=30).text.splitlines():
        if line.startswith(f'aitier_kv_cells{{model="{model}"}}'):
            return int(line.rsplit(" ", 1)[1])
    return None


def wait_for(check, what: str, within_s: float = 120):
    """Polls `check` until it is truthy (models load in the background)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {within_s} s")


def chat(url: str, model: str, max_tokens: int = 2) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens},
        timeout=120,
    )


@pytest.fixture
def tier(tmp_path):
    path = tmp_path / "aitier.toml"
    path.write_text(config(slots=2, extra_model=False, alias=True))
    proc, url = spawn_server(
        tmp_path / "server.log",
        ["--config", str(path), "--data-dir", str(tmp_path / "data"), "--admin-token", ADMIN, "--drain-grace", "0s"],
    )
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    try:
        yield proc, url, admin, path, tmp_path / "server.log"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def test_sighup_replaces_adds_and_removes_without_dropping_a_stream(tier):
    proc, url, admin, path, _ = tier
    assert kv_cells(url.metrics, "smol") == 2 * 1024
    # A long stream on the model about to be replaced.
    result = {}

    def stream():
        body = {
            "model": "smol",
            "messages": [{"role": "user", "content": "Count to a thousand."}],
            "max_tokens": 300,
            "logit_bias": NO_EOS,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        done, usage = False, None
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as r:
            for line in r.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunk = json.loads(line[len("data: "):])
                    usage = chunk.get("usage") or usage
                    if '"content"' in line:
                        result.setdefault("started", time.monotonic())
        result.update(done=done, usage=usage)

    t = threading.Thread(target=stream)
    t.start()
    wait_for(lambda: "started" in result, "stream started")

    path.write_text(config(slots=3, extra_model=True, alias=False, fallback=True))
    proc.send_signal(signal.SIGHUP)
    # The replacement takes over once loaded: its KV cache is the new size.
    wait_for(lambda: kv_cells(url.metrics, "smol") == 3 * 1024, "smol replaced")
    wait_for(lambda: chat(url, "smol2").status_code == 200, "smol2 added")
    models = {m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]}
    assert {"smol", "smol2"} <= models and "smol-alias" not in models
    r = chat(url, "smol-alias")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    # The stream that was running on the old engine finished on it.
    t.join(300)
    # Counted in tokens, as reported by usage: chunks are not tokens (one
    # full-suite run counted 223 chunks with [DONE]; not explained).
    assert result["done"] and result["usage"]["completion_tokens"] == 300
    assert chat(url, "smol").status_code == 200
    assert httpx.get(f"{url}/ready", timeout=10).status_code == 200


def test_bad_config_is_refused_and_the_running_one_stays(tier):
    _, url, admin, path, log = tier
    path.write_text("[[models]]\nname = \n")
    r = admin.post("/admin/v1/reload")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_config"
    assert str(path) in r.json()["error"]["message"]
    assert "configuration reload refused" in log.read_text()
    assert chat(url, "smol").status_code == 200
    assert chat(url, "smol-alias").status_code == 200
    # A good one is then taken, and the answer says what changed.
    path.write_text(config(slots=2, extra_model=True, alias=True))
    r = admin.post("/admin/v1/reload")
    assert r.status_code == 200, r.text
    assert r.json()["added"] == ["smol2"] and r.json()["unchanged"] == ["smol"]
    assert r.json()["replaced"] == [] and r.json()["removed"] == []


def test_unload_and_load_a_model(tier):
    _, url, admin, path, _ = tier
    path.write_text(config(slots=2, extra_model=True, alias=True))
    assert admin.post("/admin/v1/reload").status_code == 200
    wait_for(lambda: chat(url, "smol2").status_code == 200, "smol2 added")
    r = admin.post("/admin/v1/models/smol-alias/unload")
    assert r.status_code == 200 and r.json() == {"id": "smol-alias", "model": "smol", "status": "unloaded"}
    for name in ("smol", "smol-alias"):
        r = chat(url, name)
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unloaded"
    # A model unloaded on purpose does not make the replica unready while
    # another serves; its engine is gone from the metrics.
    assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
    assert kv_cells(url.metrics, "smol") is None
    assert admin.post("/admin/v1/models/nope/unload").status_code == 404
    assert admin.post("/admin/v1/models/smol/frobnicate").status_code == 404
    r = admin.post("/admin/v1/models/smol/load")
    assert r.status_code == 200 and r.json()["status"] == "loading"
    wait_for(lambda: chat(url, "smol").status_code == 200, "smol loaded again")
    assert chat(url, "smol-alias").status_code == 200
    assert admin.post("/admin/v1/models/smol/load").json()["status"] == "loaded"
    # Only with the admin token.
    assert httpx.post(f"{url}/admin/v1/models/smol/unload", timeout=10).status_code == 401
