"""A client that hangs up mid-stream must not wedge the server.

This file sorts after the ones that compare greedy outputs, so a generation
still being torn down cannot share a batch with them.
"""

import time

import httpx

PROMPT = [{"role": "user", "content": "Tell me a very long story about a dragon."}]


def cancellations(metrics_url: str) -> int:
    """The engine's count of requests dropped because their client left."""
    for line in httpx.get(metrics_url, timeout=30).text.splitlines():
        if line.startswith("aitier_requests_cancelled_total{"):
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError("aitier_requests_cancelled_total missing from /metrics")


def wait_for_cancellations(metrics_url: str, count: int, within_s: float = 30) -> int:
    """The engine notices a gone client at its next step; wait for that event
    (bounded), not for a duration."""
    deadline = time.monotonic() + within_s
    while cancellations(metrics_url) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return cancellations(metrics_url)


def test_stream_cancellation(client, model, http, metrics_url):
    before = cancellations(metrics_url)
    stream = client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=2000, temperature=0.7, seed=3, stream=True
    )
    got = [next(stream) for _ in range(3)]
    assert all(c.object == "chat.completion.chunk" for c in got)
    stream.close()

    r = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=8, temperature=0)
    assert r.choices[0].message.content
    assert http.get("/health", timeout=httpx.Timeout(10)).status_code == 200
    # The abandoned 2000-token generation was stopped, not run to the end.
    assert wait_for_cancellations(metrics_url, before + 1) >= before + 1


def test_raw_disconnect_then_healthy(base_url, model, client, http, metrics_url):
    """The same with httpx dropping the connection after the first SSE bytes."""
    before = cancellations(metrics_url)
    body = {"model": model, "messages": PROMPT, "max_tokens": 2000, "stream": True}
    for _ in range(3):
        with httpx.Client(base_url=base_url, timeout=60) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                next(r.iter_bytes())
    r = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=8, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")
    assert wait_for_cancellations(metrics_url, before + 3) >= before + 3
