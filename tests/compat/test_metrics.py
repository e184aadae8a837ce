"""Metrics on their own listener, read with Prometheus's own Python parser:
requests by route, status class, model and tenant; the GenAI latency
histograms; tokens by tenant; the engine's steps, queue and KV cells; limit
refusals by reason; the ledger's rows."""

import json
import re
import time
import uuid

import httpx
import openai
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import MODEL, NO_EOS, REPO, key_client, make_key, running_server

ADMIN = "admin-token-for-metrics-tests-01"
EMBED = "all-minilm-l6-v2"


def scrape(url: str) -> dict:
    """Every sample as {(name, frozenset(labels)): value}, parsed strictly."""
    r = httpx.get(url, timeout=30)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """The sum over samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    with running_server(tmp / "server.log", ["--data-dir", str(tmp / "data"), "--admin-token", ADMIN]) as url:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        yield url, admin


def test_api_listener_has_no_metrics(tier):
    url, _ = tier
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 404


def test_a_tenants_requests_show_in_every_family(tier):
    url, admin = tier
    tenant = f"m-{uuid.uuid4().hex[:6]}"
    client = key_client(url, make_key(admin, {"name": tenant, "rpm": 3}))
    before = scrape(url.metrics)
    plain = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say hi"}],
        max_tokens=8,
        temperature=0,
        logit_bias=NO_EOS,
    )
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Count to five"}],
        max_tokens=12,
        temperature=0,
        logit_bias=NO_EOS,
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = [c for c in stream]
    emb = client.embeddings.create(model=EMBED, input=["one", "two"])
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=f"made-up-{uuid.uuid4().hex}", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=1)

    # The ledger writes a moment after each response.
    for _ in range(100):
        after = scrape(url.metrics)
        written = value(after, "aitier_ledger_rows_written_total") - value(before, "aitier_ledger_rows_written_total")
        if written >= 4:
            break
        time.sleep(0.1)
    # Three that ran and the refusal; the unknown model never reached the ledger.
    assert written == 4

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    chat = {"http_route": "/v1/chat/completions", "tenant": tenant}
    assert delta("aitier_requests_total", status_class="2xx", model=MODEL, **chat) == 2
    assert delta("aitier_requests_total", status_class="4xx", model=MODEL, **chat) == 1
    # A name no model has is not a label value.
    assert delta("aitier_requests_total", status_class="4xx", model="", **chat) == 1
    assert not any("made-up" in str(ls) for (_, ls) in after)
    assert delta("aitier_requests_total", http_route="/v1/embeddings", status_class="2xx", model=EMBED, tenant=tenant) == 1

    gen = {"gen_ai_operation_name": "chat", "gen_ai_request_model": MODEL}
    assert delta("gen_ai_server_time_to_first_token_seconds_count", **gen) == 2
    assert delta("gen_ai_server_request_duration_seconds_count", error_type="", **gen) == 2
    assert delta("gen_ai_server_request_duration_seconds_count", error_type="429", **gen) == 1
    assert delta("gen_ai_server_request_duration_seconds_count", gen_ai_operation_name="embeddings", error_type="") == 1
    assert delta("gen_ai_server_time_per_output_token_seconds_count", **gen) == 2
    assert delta("aitier_inter_token_latency_seconds_count", **gen) >= 2

    completion = plain.usage.completion_tokens + streamed[-1].usage.completion_tokens
    assert completion == 8 + 12
    tokens = {"gen_ai_request_model": MODEL, "tenant": tenant}
    assert delta("aitier_tokens_total", gen_ai_token_type="output", **tokens) == completion
    prompt = plain.usage.prompt_tokens + streamed[-1].usage.prompt_tokens
    assert delta("aitier_tokens_total", gen_ai_token_type="input", **tokens) == prompt
    assert (
        delta("aitier_tokens_total", gen_ai_token_type="input", gen_ai_request_model=EMBED, tenant=tenant)
        == emb.usage.prompt_tokens
    )

    assert delta("aitier_limit_refusals_total", reason="rpm") == 1
    assert value(after, "aitier_ledger_rows_dropped_total") == 0

    engine = {"model": MODEL, "deployment": MODEL}
    assert delta("aitier_queue_wait_seconds_count", **engine) == 2
    # Every prompt token not served from the prefix cache, then each token
    # sampled but the last of each request, is decoded in some step.
    computed = delta("aitier_prompt_tokens_computed_total", model=MODEL)
    assert 0 < computed <= prompt
    assert delta("aitier_step_tokens_sum", **engine) == computed + completion - 2
    assert delta("aitier_step_tokens_count", **engine) >= completion - 2
    assert value(after, "aitier_kv_cells", model=MODEL) == 4 * 4096
    assert 0 < value(after, "aitier_kv_cells_used", model=MODEL) <= 4 * 4096


def families(text: str) -> tuple[dict, set]:
    """Family name (counters without `_total`) → type; and every label name."""
    found = list(text_string_to_metric_families(text))
    labels = {k for f in found for s in f.samples for k in s.labels}
    return {f.name: f.type for f in found}, labels


def documented() -> set:
    """The metric names in docs/metrics.md's tables, as families."""
    names = set()
    for line in (REPO / "docs/metrics.md").read_text().splitlines():
        m = re.match(r"^\| `([a-z_]+)` \|", line)
        if m:
            names.add(re.sub(r"_total$", "", m.group(1)))
    return names


def test_every_metric_is_documented_and_on_the_dashboard(tier):
    url, _ = tier
    emitted, labels = families(httpx.get(url.metrics, timeout=30).text)
    docs = documented()
    assert set(emitted) == docs, f"undocumented: {set(emitted) - docs}; not emitted: {docs - set(emitted)}"
    dashboard = json.loads((REPO / "deploy/grafana/aitier.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = set()
    for e in exprs:
        for name in re.findall(r"\b((?:aitier|gen_ai)_[a-z_]+)", e):
            if name not in labels:
                used.add(re.sub(r"_(bucket|sum|count|total)$", "", name))
    assert used <= docs, f"the dashboard graphs what is not emitted: {used - docs}"
    assert docs <= used, f"not on the dashboard: {docs - used}"
