"""A client that hangs up mid-stream must not wedge the server."""

import httpx

PROMPT = [{"role": "user", "content": "Tell me a very long story about a dragon."}]


def test_stream_cancellation(client, model, http):
    stream = client.chat.completions.create(
        model=model, messages=PROMPT, max_tokens=2000, temperature=0.7, seed=3, stream=True
    )
    got = [next(stream) for _ in range(3)]
    assert all(c.object == "chat.completion.chunk" for c in got)
    stream.close()

    r = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=8, temperature=0)
    assert r.choices[0].message.content
    assert http.get("/health", timeout=httpx.Timeout(10)).status_code == 200


def test_raw_disconnect_then_healthy(base_url, model, client):
    """The same with httpx dropping the connection after the first SSE bytes."""
    body = {"model": model, "messages": PROMPT, "max_tokens": 2000, "stream": True}
    for _ in range(3):
        with httpx.Client(base_url=base_url, timeout=60) as c:
            with c.stream("POST", "/v1/chat/completions", json=body) as r:
                assert r.status_code == 200
                assert r.headers["content-type"].startswith("text/event-stream")
                next(r.iter_bytes())
    r = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=8, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length")
