"""API keys and limits as the official SDK sees them, on SQLite and PostgreSQL:
the SDK's own exception classes for 401, 403 and 429, and the rate-limit
headers it exposes through `with_raw_response`."""

import os
import shutil
import subprocess
import uuid

import httpx
import openai
import pytest

from conftest import MODEL, REQUEST_TIMEOUT_S, running_server

ADMIN = "admin-token-for-compat-tests-0123"
PG_ENV = "AITIER_TEST_POSTGRES_URL"


def _postgres_database() -> str | None:
    admin_url = os.environ.get(PG_ENV)
    if not admin_url:
        print(f"\n!!! SKIPPED: PostgreSQL compat tests need {PG_ENV} (scripts/test.sh starts a server) !!!")
        return None
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to create the test database")
    name = f"c_{uuid.uuid4().hex}"
    subprocess.run(["psql", admin_url, "-qc", f"CREATE DATABASE {name}"], check=True)
    return admin_url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tier(request, tmp_path_factory):
    """A server with an admin token on a fresh database of each kind."""
    if request.param == "sqlite":
        db = f"sqlite://{tmp_path_factory.mktemp('tenancy')}/aitier.db"
    else:
        db = _postgres_database()
        if db is None:
            pytest.skip(f"{PG_ENV} not set")
    log = tmp_path_factory.mktemp("tenancy-log") / "server.log"
    with running_server(log, ["--database-url", db, "--admin-token", ADMIN]) as url:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        yield url, admin


def _key(admin: httpx.Client, tenant: dict) -> str:
    r = admin.post("/admin/v1/tenants", json=tenant)
    assert r.status_code == 201, r.text
    r = admin.post(f"/admin/v1/tenants/{tenant['name']}/keys")
    assert r.status_code == 201, r.text
    return r.json()["key"]


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=REQUEST_TIMEOUT_S)


def _hello(client: openai.OpenAI, model: str = MODEL):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, temperature=0
    )


def test_unknown_and_revoked_keys_raise_authentication_error(tier):
    url, admin = tier
    key = _key(admin, {"name": f"auth-{uuid.uuid4().hex[:6]}"})
    assert _hello(_client(url, key)).parse().choices[0].message.role == "assistant"
    with pytest.raises(openai.AuthenticationError) as e:
        _hello(_client(url, "sk-aitier-000000000000-" + "0" * 32))
    assert e.value.code == "invalid_api_key"
    key_id = key.split("-")[2]
    assert admin.post(f"/admin/v1/keys/{key_id}/revoke").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        _hello(_client(url, key))


def test_a_model_outside_the_allow_list_raises_permission_denied(tier):
    url, admin = tier
    key = _key(admin, {"name": f"narrow-{uuid.uuid4().hex[:6]}", "models": ["some-other-model"]})
    client = _client(url, key)
    with pytest.raises(openai.PermissionDeniedError) as e:
        _hello(client)
    assert e.value.status_code == 403
    assert e.value.code == "model_not_allowed"
    assert [m.id for m in client.models.list()] == []


def test_rpm_limit_headers_and_rate_limit_error(tier):
    url, admin = tier
    client = _client(url, _key(admin, {"name": f"rpm-{uuid.uuid4().hex[:6]}", "rpm": 1}))
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
    client = _client(url, _key(admin, {"name": f"quota-{uuid.uuid4().hex[:6]}", "budget_tokens": 1}))
    _hello(client)  # admitted while the budget had something left
    with pytest.raises(openai.RateLimitError) as e:
        _hello(client)
    assert e.value.code == "insufficient_quota"
    assert e.value.response.headers["x-should-retry"] == "false"
