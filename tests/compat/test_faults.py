"""Faults a client can cause: headers or a body trickled a byte at a time
(slowloris) are cut after `--read-timeout`, while other clients are served."""

import json
import socket
import threading
import time
from urllib.parse import urlsplit

import openai

from conftest import MODEL, running_server

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
