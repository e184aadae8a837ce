"""API keys and limits as the official SDK sees them, on SQLite and PostgreSQL:
the SDK's own exception classes for 401, 403 and 429, the rate-limit
headers it exposes through `with_raw_response`, stored responses that only
their tenant can read, and the ledger's endpoint column."""

import hashlib
import os
import shutil
import subprocess
import uuid

import anthropic
import httpx
import openai
import pytest

from conftest import PG_ENV, MODEL, REQUEST_TIMEOUT_S, key_client, make_key, postgres_database, running_server, usage_rows

ADMIN = "admin-token-for-compat-tests-0123"
# Each tier's database URL, by the tier's base URL.
DATABASES: dict[str, str] = {}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tier(request, tmp_path_factory):
    """A server with an admin token on a fresh database of each kind."""
    if request.param == "sqlite":
        db = f"sqlite://{tmp_path_factory.mktemp('tenancy')}/aitier.db"
    else:
        db = postgres_database()
        if db is None:
            pytest.skip(f"{PG_ENV} not set")
    log = tmp_path_factory.mktemp("tenancy-log") / "server.log"
    with running_server(log, ["--database-url", db, "--admin-token", ADMIN]) as url:
        DATABASES[url] = db
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        yield url, admin


def _hello(client: openai.OpenAI, model: str = MODEL):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0
    )


def test_unknown_and_revoked_keys_raise_authentication_error(tier):
    url, admin = tier
    key = make_key(admin, {"name": f"auth-{uuid.uuid4().hex[:6]}"})
    assert _hello(key_client(url, key)).parse().choices[0].message.role == "assistant"
    with pytest.raises(openai.AuthenticationError) as e:
        _hello(key_client(url, "sk-aitier-000000000000-" + "0" * 32))
    assert e.value.code == "invalid_api_key"
    key_id = key.split("-")[2]
    assert admin.post(f"/admin/v1/keys/{key_id}/revoke").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        _hello(key_client(url, key))


def test_a_model_outside_the_allow_list_raises_permission_denied(tier):
    url, admin = tier
    key = make_key(admin, {"name": f"narrow-{uuid.uuid4().hex[:6]}", "models": ["some-other-model"]})
    client = key_client(url, key)
    with pytest.raises(openai.PermissionDeniedError) as e:
        _hello(client)
    assert e.value.status_code == 403
    assert e.value.code == "model_not_allowed"
    assert [m.id for m in client.models.list()] == []


def test_rpm_limit_headers_and_rate_limit_error(tier):
    url, admin = tier
    client = key_client(url, make_key(admin, {"name": f"rpm-{uuid.uuid4().hex[:6]}", "rpm": 1}))
    raw = _hello(client)
    assert raw.headers["x-ratelimit-limit-requests"] == "1"
    assert raw.headers["x-ratelimit-remaining-requests"] == "0"
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    with pytest.raises(openai.RateLimitError) as e:
        _hello(client)
    assert e.value.code == "rate_limit_exceeded"
    assert int(e.value.response.headers["retry-after"]) >= 1
    assert int(e.value.response.headers["retry-after-ms"]) > 0


def test_spent_budget_is_insufficient_quota_and_not_retried(tier):
    url, admin = tier
    client = key_client(url, make_key(admin, {"name": f"quota-{uuid.uuid4().hex[:6]}", "budget_tokens": 1}))
    _hello(client)  # admitted while the budget had something left
    with pytest.raises(openai.RateLimitError) as e:
        _hello(client)
    assert e.value.code == "insufficient_quota"
    assert e.value.response.headers["x-should-retry"] == "false"


def _usage_by_endpoint(admin: httpx.Client, tenant: str, expected: int) -> dict:
    return {row["endpoint"]: row["requests"] for row in usage_rows(admin, tenant, expected)}


def test_responses_belong_to_their_tenant_and_the_ledger_names_each_api(tier):
    url, admin = tier
    a_name = f"resp-a-{uuid.uuid4().hex[:6]}"
    a_key = make_key(admin, {"name": a_name})
    a = key_client(url, a_key)
    b = key_client(url, make_key(admin, {"name": f"resp-b-{uuid.uuid4().hex[:6]}"}))
    r = a.responses.create(model=MODEL, input="Hi", max_output_tokens=2, temperature=0)
    attempts = {
        "retrieve": lambda: b.responses.retrieve(r.id),
        "input_items": lambda: b.responses.input_items.list(r.id),
        "delete": lambda: b.responses.delete(r.id),
        "continue": lambda: b.responses.create(model=MODEL, input="x", previous_response_id=r.id, max_output_tokens=2),
    }
    for name, attempt in attempts.items():
        with pytest.raises(openai.NotFoundError):
            attempt()
            pytest.fail(f"another tenant could {name} the response")
    assert a.responses.retrieve(r.id).output_text == r.output_text

    # Anthropic's SDK sends its key in `x-api-key`.
    claude = anthropic.Anthropic(base_url=url, api_key=a_key, max_retries=0, timeout=REQUEST_TIMEOUT_S)
    m = claude.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert m.usage.output_tokens > 0
    stranger = anthropic.Anthropic(base_url=url, api_key="sk-aitier-000000000000-" + "0" * 32, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        stranger.messages.create(model=MODEL, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert e.value.body["error"]["type"] == "authentication_error"

    assert _usage_by_endpoint(admin, a_name, 2) == {"/v1/responses": 1, "/v1/messages": 1}


def test_tenant_keys_are_refused_on_the_admin_api(tier):
    url, admin = tier
    tenant = f"adm-{uuid.uuid4().hex[:8]}"
    key = make_key(admin, {"name": tenant})
    calls = [
        ("GET", "/admin/v1/tenants", None),
        ("POST", "/admin/v1/tenants", {"name": f"{tenant}-made-by-a-key"}),
        ("GET", f"/admin/v1/tenants/{tenant}", None),
        ("POST", f"/admin/v1/tenants/{tenant}/keys", {}),
        ("GET", "/admin/v1/keys", None),
        ("GET", "/admin/v1/usage", None),
        ("POST", "/admin/v1/reload", None),
    ]
    for headers in ({"Authorization": f"Bearer {key}"}, {"x-api-key": key}, {}):
        for method, path, body in calls:
            r = httpx.request(method, url + path, headers=headers, json=body, timeout=30)
            assert r.status_code == 401, (method, path, headers.keys(), r.text)
            assert r.json()["error"]["code"] == "invalid_api_key", r.text
    # Nothing the key asked for happened.
    assert admin.get(f"/admin/v1/tenants/{tenant}-made-by-a-key").status_code == 404
    keys = admin.get("/admin/v1/keys", params={"tenant": tenant}).json()["data"]
    assert len(keys) == 1, keys


def _stored_bytes(db: str) -> bytes:
    """Everything the database holds, as bytes: SQLite's files (with its
    write-ahead log), or a dump of the PostgreSQL database."""
    if db.startswith("sqlite://"):
        path = db.removeprefix("sqlite://")
        return b"".join(
            open(p, "rb").read() for p in (path, path + "-wal") if os.path.exists(p)
        )
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is needed to read the test database")
    return subprocess.run(["pg_dump", "--data-only", db], check=True, capture_output=True).stdout


def test_keys_are_stored_hashed(tier):
    url, admin = tier
    tenant = f"hash-{uuid.uuid4().hex[:8]}"
    key = make_key(admin, {"name": tenant})
    secret = key.rsplit("-", 1)[1]
    # The key works, so the row that checks it is written.
    _hello(key_client(url, key))
    stored = _stored_bytes(DATABASES[url])
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    assert secret.encode() not in stored and key.encode() not in stored
