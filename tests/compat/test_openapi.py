"""The OpenAPI document: served as committed, and held to by the server.

Schemathesis generates requests from the document (its examples, boundary
cases, random bodies and, through the document's links, sequences such as
create-tenant then issue-key then revoke-key) and checks every answer: no 5xx,
a documented status and content type, a body (and every SSE event of a stream)
that the documented schema accepts. The API runs with a tenant's key on the
default models; the admin API with the admin token, after it.
"""

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import REPO, make_key, running_server

ADMIN = "admin-token-for-openapi-tests-01"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# Per operation and phase. Bounded so the run takes about a minute here.
MAX_EXAMPLES = 10


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi")
    # A short context bounds every generation: a fuzzed `max_tokens` of
    # 2^32 stops at the context's end within seconds.
    extra = ["--data-dir", str(tmp / "data"), "--admin-token", ADMIN, "--ctx-size", "256"]
    with running_server(tmp / "server.log", extra) as url:
        yield url, tmp


def test_served_document_is_the_committed_one(tier):
    url, _ = tier
    r = httpx.get(f"{url}/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    committed = (REPO / "docs" / "openapi.json").read_text()
    assert r.text == committed, "docs/openapi.json is stale: run `make openapi`"
    doc = json.loads(committed)
    assert doc["openapi"].startswith("3.1")


def schemathesis(url: str, cwd: Path, auth: str, *select: str) -> subprocess.CompletedProcess:
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{url}/openapi.json",
        "--checks",
        CHECKS,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "1",
        "--generation-database",
        "none",
        "--workers",
        "2",
        "--request-timeout",
        "60",
        "--header",
        f"Authorization: Bearer {auth}",
        "--no-color",
        *select,
    ]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)


def passed(run: subprocess.CompletedProcess) -> str:
    """The summary's test-case line, once the run is known to be clean."""
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-12000:]
    cases = [line for line in out.splitlines() if " generated, " in line]
    assert cases and "passed" in cases[-1], out[-4000:]
    return cases[-1]


def test_schemathesis_finds_nothing_on_the_api_then_the_admin_api(tier):
    url, tmp = tier
    admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
    key = make_key(admin, {"name": "schemathesis"})

    api = passed(schemathesis(url, tmp, key, "--exclude-path-regex", "^/admin/"))
    admin_api = passed(schemathesis(url, tmp, ADMIN, "--include-path-regex", "^/admin/"))
    print(f"API: {api}\nadmin API: {admin_api}")

    # The runs reached the model: the tenant's ledger has generations.
    rows = admin.get("/admin/v1/usage", params={"tenant": "schemathesis", "group_by": "endpoint,status"}).json()["data"]
    ok = {r["endpoint"]: r["requests"] for r in rows if r["status"] == "ok"}
    for endpoint in ["/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages", "/v1/embeddings"]:
        assert ok.get(endpoint, 0) > 0, rows
