"""Two replicas sharing one PostgreSQL and one Redis, as behind a load
balancer: a request rate and a token rate hold across both with requests
alternated between them, a token budget under 100 concurrent requests
split between them is overspent by at most one reservation, a revoked key is refused by the other replica at
once, Redis stopped mid-run refuses limited requests with 503
`limits_unavailable` (or lets them through with `--limits-fail-open`) and
recovers when it returns, and the concurrency places and budget holds of a
replica killed while it held them come back when their leases expire."""

import os
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from conftest import MODEL, NO_EOS, REPO, gauge, key_client, make_key, postgres_database, running_server, spawn_server

ADMIN = "admin-token-for-replica-tests-0123"
REDIS_TEMP = REPO / "scripts" / "redis-temp.sh"
LEASE = "2s"


def _redis(cmd: str, where: str) -> str:
    return subprocess.run([str(REDIS_TEMP), cmd, where], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def redis():
    """A Redis of the test's own, which it may kill and start again."""
    where = os.path.join(tempfile.mkdtemp(), "redis")
    url = _redis("start", where)
    yield where, url
    _redis("stop", where)


@pytest.fixture
def database():
    db = postgres_database()
    if db is None:
        pytest.skip("AITIER_TEST_POSTGRES_URL not set: scripts/test.sh starts PostgreSQL")
    return db


def _args(db: str, redis_url: str, *extra: str) -> list[str]:
    return ["--database-url", db, "--redis-url", redis_url, "--admin-token", ADMIN, "--hold-lease", LEASE, *extra]


def _hello(client: openai.OpenAI, **kw):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=kw.pop("max_tokens", 1), **kw
    )


def _admin(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)


def test_rate_limits_and_revocation_hold_across_two_replicas(tmp_path, database, redis):
    _, redis_url = redis
    with running_server(tmp_path / "a.log", _args(database, redis_url)) as a, running_server(
        tmp_path / "b.log", _args(database, redis_url)
    ) as b:
        # Requests per minute: 6 for the tenant, asked for 10 times, alternately.
        key = make_key(_admin(a), {"name": "rpm-team", "rpm": 6})
        clients = [key_client(a, key), key_client(b, key)]
        outcomes = []
        for i in range(10):
            try:
                _hello(clients[i % 2])
                outcomes.append("ok")
            except openai.RateLimitError as e:
                assert e.code == "rate_limit_exceeded", e
                outcomes.append("429")
        assert outcomes == ["ok"] * 6 + ["429"] * 4, outcomes

        # Tokens per minute: each request costs its prompt plus exactly 40
        # generated tokens; what both replicas admit together fits the limit
        # (plus what refilled while the test ran).
        tpm = 400
        key = make_key(_admin(b), {"name": "tpm-team", "tpm": tpm})
        clients = [key_client(a, key), key_client(b, key)]
        started, used, refused = time.monotonic(), [], 0
        for i in range(12):
            try:
                r = _hello(clients[i % 2], max_tokens=40, logit_bias=NO_EOS)
                used.append(r.usage.total_tokens)
            except openai.RateLimitError as e:
                assert e.code == "rate_limit_exceeded", e
                refused += 1
        refilled = (time.monotonic() - started) * tpm / 60
        assert refused > 0 and len(used) >= tpm // used[0] - 1, (used, refused)
        assert sum(used) <= tpm + refilled, (used, refilled)

        # A key revoked through one replica is refused by the other at once.
        key = make_key(_admin(a), {"name": "revoked-team"})
        assert _hello(key_client(b, key)).choices
        key_id = key.split("-")[2]
        assert _admin(a).post(f"/admin/v1/keys/{key_id}/revoke").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            _hello(key_client(b, key))


def test_a_budget_holds_across_two_replicas_under_100_concurrent_requests(tmp_path, database, redis):
    _, redis_url = redis
    budget, max_tokens = 600, 8
    with running_server(tmp_path / "a.log", _args(database, redis_url)) as a, running_server(
        tmp_path / "b.log", _args(database, redis_url)
    ) as b:
        key = make_key(_admin(a), {"name": "budgeted", "budget_tokens": budget, "budget_period": "day"})
        urls = [a, b]

        def one(i: int):
            body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens}
            r = httpx.post(f"{urls[i % 2]}/v1/chat/completions", json=body,
                           headers={"Authorization": f"Bearer {key}"}, timeout=120)
            return r.status_code, r.json()

        with ThreadPoolExecutor(100) as pool:
            answers = list(pool.map(one, range(100)))
        ok = [body["usage"] for status, body in answers if status == 200]
        refused = [body["error"]["code"] for status, body in answers if status != 200]
        assert refused and set(refused) == {"insufficient_quota"}, refused[:3]
        # Billed: what the answers report, written by both replicas.
        rows = []
        for _ in range(100):
            rows = _admin(b).get("/admin/v1/usage", params={"tenant": "budgeted", "group_by": "tenant"}).json()["data"]
            if rows and rows[0]["requests"] >= len(ok):
                break
            time.sleep(0.1)
        billed = rows[0]["total_tokens"]
        assert billed == sum(u["total_tokens"] for u in ok)
        # Overspent by at most one request's reservation (its prompt plus max_tokens).
        reservation = max(u["prompt_tokens"] for u in ok) + max_tokens
        assert ok and billed <= budget + reservation, (billed, len(ok))


def test_redis_down_refuses_limited_requests_then_recovers(tmp_path, database, redis):
    where, redis_url = redis
    with running_server(tmp_path / "closed.log", _args(database, redis_url)) as closed, running_server(
        tmp_path / "open.log", _args(database, redis_url, "--limits-fail-open")
    ) as open_:
        key = make_key(_admin(closed), {"name": "limited", "rpm": 1000})
        assert _hello(key_client(closed, key)).choices
        _redis("pause", where)
        with pytest.raises(openai.InternalServerError) as e:
            _hello(key_client(closed, key))
        assert e.value.status_code == 503 and e.value.code == "limits_unavailable", e.value
        assert _sample(closed.metrics, 'aitier_limit_refusals_total{reason="limits_unavailable"}') >= 1
        # The fail-open replica serves, and counts what it let through.
        assert _hello(key_client(open_, key)).choices
        assert gauge(open_.metrics, "aitier_limits_unchecked_total") >= 1
        # A tenant without limits needs no Redis.
        free = make_key(_admin(closed), {"name": "unlimited"})
        assert _hello(key_client(closed, free)).choices
        _redis("resume", where)
        deadline = time.monotonic() + 10
        while True:
            try:
                assert _hello(key_client(closed, key)).choices
                break
            except openai.InternalServerError:
                assert time.monotonic() < deadline, "not back within 10 s of Redis"
                time.sleep(0.2)


def test_a_killed_replicas_places_and_budget_holds_come_back_when_their_leases_expire(tmp_path, database, redis):
    _, redis_url = redis
    proc, a = spawn_server(tmp_path / "a.log", _args(database, redis_url, "--drain-grace", "0s"))
    try:
        with running_server(tmp_path / "b.log", _args(database, redis_url)) as b:
            # Two concurrency places, and a budget that one long request's
            # reservation (its prompt plus 4,000 tokens) holds whole.
            places = make_key(_admin(a), {"name": "two-at-once", "max_concurrent": 2})
            budget = make_key(_admin(a), {"name": "one-budget", "budget_tokens": 4000, "budget_period": "day"})
            for key in (places, places, budget):
                threading.Thread(
                    target=lambda k=key: _swallow(
                        lambda: list(_hello(key_client(a, k), max_tokens=4000, logit_bias=NO_EOS, stream=True))
                    ),
                    daemon=True,
                ).start()
            deadline = time.monotonic() + 30
            while gauge(a.metrics, "aitier_sequences_running") < 3:
                assert time.monotonic() < deadline, "the streams did not start"
                time.sleep(0.1)
            with pytest.raises(openai.RateLimitError) as e:
                _hello(key_client(b, places))
            assert "concurrent" in str(e.value)
            with pytest.raises(openai.RateLimitError) as e:
                _hello(key_client(b, budget))
            assert e.value.code == "insufficient_quota", e.value
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed = time.monotonic()
            # Still held right after the kill, given back within the lease
            # (2 s) and the next sweep.
            for key, what in ((places, "concurrency places"), (budget, "budget hold")):
                while True:
                    try:
                        assert _hello(key_client(b, key)).choices
                        break
                    except openai.RateLimitError:
                        assert time.monotonic() - killed < 6, f"the {what} were not given back"
                        time.sleep(0.2)
                waited = time.monotonic() - killed
                assert waited >= 1, f"{what} given back after {waited:.1f} s, before the lease could expire"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _sample(metrics_url: str, series: str) -> float:
    """One series' value, named with its labels as the scrape writes them."""
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _swallow(run):
    try:
        run()
    except (openai.APIError, httpx.HTTPError):
        pass  # the replica was killed under the stream
