"""Security checks: HTTPS with a certificate the test makes, CORS off unless
origins are configured, client request ids sanitised before they reach logs
and headers, and no secret in any log line at debug level."""

import os
import signal
import socket
import ssl
import subprocess
import textwrap
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from conftest import MODEL, REPO, make_key, postgres_database, running_server, spawn_server

ORIGIN = "https://app.example.com"
HELLO = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}


def _binary() -> str:
    return os.environ.get("AITIER_BIN", str(REPO / "target" / "debug" / "aitier"))


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def _self_signed(dir: Path) -> tuple[Path, Path]:
    cert, key = dir / "cert.pem", dir / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def test_https_with_a_self_signed_certificate(tmp_path):
    cert, key = _self_signed(tmp_path)
    trusted = ssl.create_default_context(cafile=str(cert))
    args = ["--data-dir", str(tmp_path / "data"), "--tls-cert", str(cert), "--tls-key", str(key), "--drain-grace", "0s"]
    proc, url = spawn_server(tmp_path / "server.log", args, verify=trusted)
    try:
        assert url.startswith("https://")
        # A client that connects and never says hello holds up no one.
        where = urlsplit(url)
        idle = socket.create_connection((where.hostname, where.port))
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0,
                               http_client=httpx.Client(verify=trusted, timeout=60))
        reply = client.chat.completions.create(**HELLO)
        assert reply.choices[0].message.content
        chunks = list(client.chat.completions.create(**HELLO, stream=True))
        assert chunks and chunks[-1].choices[0].finish_reason
        # The container's health check speaks TLS when the server does.
        probe = [_binary(), "probe", "--port", str(where.port), "--path", "/ready"]
        assert subprocess.run(probe, env=dict(os.environ, AITIER_TLS_CERT=str(cert)), timeout=30).returncode == 0
        # Plain HTTP on the HTTPS port gets no HTTP answer.
        with pytest.raises(httpx.TransportError):
            httpx.get(url.replace("https://", "http://") + "/health", timeout=10)
        # A client that does not trust the certificate refuses the server.
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/health", timeout=10)
        idle.close()
    finally:
        _stop(proc)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tls-cert", "missing-cert.pem", "--tls-key", "missing-key.pem"], "TLS certificate missing-cert.pem"),
        (["--tls-cert", "missing-cert.pem"], "tls_cert and tls_key go together"),
        (["--cors-origin", "app.example.com"], "cors origin `app.example.com`"),
    ],
)
def test_bad_tls_or_cors_settings_stop_the_start(tmp_path, flags, message):
    run = subprocess.run(
        [_binary(), "serve", "--port", "0", "--metrics-addr", "off", "--data-dir", str(tmp_path),
         "--models-dir", str(REPO / "models"), *flags],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode != 0
    assert message in run.stderr, run.stderr


def _preflight(url: str, origin: str) -> httpx.Response:
    return httpx.options(
        f"{url}/v1/chat/completions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-request-id",
        },
        timeout=10,
    )


def test_cors_is_off_by_default(base_url):
    assert "access-control-allow-origin" not in _preflight(base_url, ORIGIN).headers
    r = httpx.post(f"{base_url}/v1/chat/completions", json=HELLO, headers={"Origin": ORIGIN}, timeout=60)
    assert r.status_code == 200, r.text
    assert not [h for h in r.headers if h.startswith("access-control-")]


def test_cors_allows_only_the_configured_origins(tmp_path):
    args = ["--data-dir", str(tmp_path / "data"), "--cors-origin", ORIGIN, "--cors-origin", "http://localhost:5173"]
    with running_server(tmp_path / "server.log", args) as url:
        pre = _preflight(url, ORIGIN)
        assert pre.status_code == 200, pre.text
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "origin" in pre.headers["vary"].lower()
        assert "access-control-allow-origin" not in _preflight(url, "https://evil.example").headers

        r = httpx.post(f"{url}/v1/chat/completions", json=HELLO, headers={"Origin": ORIGIN}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert r.headers["access-control-expose-headers"] == "*"
        # A page reads the API's errors too.
        bad = httpx.post(f"{url}/v1/chat/completions", json={"model": MODEL}, headers={"Origin": ORIGIN}, timeout=60)
        assert bad.status_code == 400 and bad.headers["access-control-allow-origin"] == ORIGIN
        other = httpx.post(f"{url}/v1/chat/completions", json=HELLO, headers={"Origin": "https://evil.example"}, timeout=60)
        assert "access-control-allow-origin" not in other.headers


def test_client_request_ids_are_sanitised(tmp_path, monkeypatch):
    monkeypatch.setenv("RUST_LOG", "debug,llama-cpp-2=warn")
    log = tmp_path / "server.log"
    proc, url = spawn_server(log, ["--data-dir", str(tmp_path / "data"), "--drain-grace", "0s"])
    where = urlsplit(url)
    try:
        kept = "0f8fad5b-d9cb-469f-a165-70867728950e"
        r = httpx.get(f"{url}/v1/models", headers={"x-request-id": kept}, timeout=10)
        assert r.headers["x-request-id"] == kept
        refused = [b"two words", b"tab\there", b"x" * 129, b'quote"d', b"<script>", "\u00fcber".encode()]
        for bad in refused:
            # Sent as raw bytes: HTTP clients refuse some of these themselves.
            with socket.create_connection((where.hostname, where.port), timeout=10) as s:
                s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-request-id: " + bad + b"\r\n\r\n")
                answer = b""
                while chunk := s.recv(65536):
                    answer += chunk
            head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
            assert head.startswith("http/1.1 200"), (bad, head)
            ids = [line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.startswith("x-request-id:")]
            assert len(ids) == 1 and ids[0].startswith("req_"), (bad, ids)
    finally:
        _stop(proc)
    text = log.read_bytes()
    assert kept.encode() in text, "the accepted id is logged"
    for bad in refused:
        assert bad not in text, bad


def _relay_config(dir: Path, upstream: str) -> Path:
    config = dir / "gateway.toml"
    config.write_text(textwrap.dedent(f"""
        [[models]]
        name = "relay"

        [[models.deployments]]
        base_url = "{upstream}/v1"
        api_key_env = "AITIER_SECURITY_TEST_UPSTREAM_KEY"
        model = "{MODEL}"
    """))
    return config


def test_no_secret_reaches_the_logs_at_debug_level(tmp_path, monkeypatch):
    """An upstream tier (its tenancy on PostgreSQL, with a password in the
    URL) behind a gateway tier that calls it with a key of its own; both
    log at debug level while keys, admin tokens and the upstream key are
    used, refused and revoked, and the console is signed in to (its
    cookies carry a key or stand for the admin token)."""
    monkeypatch.setenv("RUST_LOG", "debug,llama-cpp-2=warn")
    admin_up, admin_gw = f"admin-up-{uuid.uuid4().hex}", f"admin-gw-{uuid.uuid4().hex}"
    password = f"pw{uuid.uuid4().hex}"
    db = postgres_database()
    if db is None:
        db = f"sqlite://{tmp_path}/upstream.db"
    else:
        db = db.replace("postgres://postgres@", f"postgres://postgres:{password}@")
    up_log, gw_log = tmp_path / "upstream.log", tmp_path / "gateway.log"
    secrets = [admin_up, admin_gw, password]
    with running_server(up_log, ["--database-url", db, "--admin-token", admin_up]) as up:
        up_admin = httpx.Client(base_url=up, headers={"Authorization": f"Bearer {admin_up}"}, timeout=60)
        upstream_key = make_key(up_admin, {"name": "gateway"})
        monkeypatch.setenv("AITIER_SECURITY_TEST_UPSTREAM_KEY", upstream_key)
        gateway_args = ["--config", str(_relay_config(tmp_path, up)), "--data-dir", str(tmp_path / "gw"),
                        "--admin-token", admin_gw]
        with running_server(gw_log, gateway_args) as gw:
            gw_admin = httpx.Client(base_url=gw, headers={"Authorization": f"Bearer {admin_gw}"}, timeout=60)
            key = make_key(gw_admin, {"name": "app"})
            # A key shaped like ours whose secret is wrong, and a wrong admin token.
            forged = key[:-8] + "AAAAAAAA"
            secrets += [upstream_key, key, forged, key.rsplit("-", 1)[1], forged.rsplit("-", 1)[1], "wrong-admin-token"]
            client = openai.OpenAI(base_url=f"{gw}/v1", api_key=key, max_retries=0, timeout=60)
            relay = {**HELLO, "model": "relay"}
            assert client.chat.completions.create(**relay).choices[0].message.content is not None
            assert list(client.chat.completions.create(**relay, stream=True))
            r = httpx.post(f"{gw}/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                           json={"model": "relay", "max_tokens": 2, "messages": [{"role": "user", "content": "Hi"}]},
                           timeout=60)
            assert r.status_code == 200, r.text
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"{gw}/v1", api_key=forged, max_retries=0).models.list()
            bad_admin = httpx.get(f"{gw}/admin/v1/tenants", headers={"Authorization": "Bearer wrong-admin-token"})
            assert bad_admin.status_code == 401
            assert gw_admin.post("/admin/v1/reload").status_code == 200
            # The console's sign-ins, and requests with their cookies.
            cookies = []
            for token, path in ((admin_gw, "/admin/v1/tenants"), (key, "/v1/usage")):
                console = httpx.Client(base_url=gw, timeout=60)
                assert console.post("/console/session", json={"token": token}).status_code == 200
                assert console.get(path).status_code == 200
                cookies.append(console.cookies["aitier_console"])
            assert httpx.post(f"{gw}/console/session", json={"token": forged}).status_code == 401
            secrets += cookies
            key_id = gw_admin.get("/admin/v1/keys", params={"tenant": "app"}).json()["data"][0]["id"]
            assert gw_admin.post(f"/admin/v1/keys/{key_id}/revoke").status_code == 200
            with pytest.raises(openai.AuthenticationError):
                client.models.list()
    for log in (up_log, gw_log):
        text = log.read_text(errors="replace")
        # The logs are at debug level and carry the requests they should.
        assert "DEBUG" in text and "/v1/chat/completions" in text, log
        for secret in secrets:
            assert secret not in text, f"a secret is in {log.name}"
