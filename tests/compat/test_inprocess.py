"""The tier inside the test's own process, through the Python binding
(`bindings/python`, built and installed by the test command): the OpenAI
SDK's shape, the same answers as the service over HTTP, the SDK's error
classes, keys, limits and ledger shared with a service on the same
database, and the GIL released while the engine works."""

import concurrent.futures
import os
import subprocess
import sys
import threading

import httpx
import openai
import pytest

import aitier
from conftest import MODEL, REPO, make_key, running_server, usage_rows

EMBED = "all-minilm-l6-v2"
ADMIN = "admin-token-for-inprocess-tests-01"
HI = [{"role": "user", "content": "Name a colour."}]


def config_file(directory, database_url: str) -> str:
    """A configuration as `aitier serve --config` takes it."""
    path = directory / "aitier.toml"
    path.write_text(
        f'[tenancy]\ndatabase_url = "{database_url}"\n\n'
        f'[[models]]\nname = "{MODEL}"\npath = "{REPO / "models/SmolLM2-135M-Instruct.Q4_1.gguf"}"\n\n'
        f'[[models]]\nname = "{EMBED}"\npath = "{REPO / "models/all-MiniLM-L6-v2.F32.gguf"}"\nkind = "embedding"\n'
    )
    return str(path)


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    d = tmp_path_factory.mktemp("inprocess")
    with aitier.Tier(config_file(d, f"sqlite://{d}/aitier.db")) as t:
        yield t


def test_chat_answers_as_the_service_does(tier, client):
    mine = tier.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, temperature=0)
    theirs = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, temperature=0)
    assert mine.object == "chat.completion"
    assert mine.choices[0].message.content == theirs.choices[0].message.content
    assert mine.choices[0].message.content
    assert mine.choices[0].finish_reason == theirs.choices[0].finish_reason
    assert mine.usage.prompt_tokens == theirs.usage.prompt_tokens
    assert mine.usage.completion_tokens == theirs.usage.completion_tokens
    # Plain data: a dict as well as attributes, and a field left out is None.
    assert mine["choices"][0]["message"]["role"] == "assistant"
    assert mine.choices[0].message.tool_calls is None
    assert mine.model_dump()["usage"]["total_tokens"] == mine.usage.total_tokens


def test_a_stream_is_an_iterator_of_chunks(tier):
    whole = tier.chat.completions.create(model=MODEL, messages=HI, max_tokens=16, temperature=0)
    chunks = list(
        tier.chat.completions.create(
            model=MODEL,
            messages=HI,
            max_tokens=16,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert len(chunks) > 3
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_closing_a_stream_stops_it(tier):
    with tier.chat.completions.create(
        model=MODEL, messages=HI, max_tokens=200, stream=True, extra_body={"logit_bias": {"0": -100, "2": -100}}
    ) as stream:
        first = next(stream)
    assert first.object == "chat.completion.chunk"
    with pytest.raises(StopIteration):
        next(stream)


def test_completions_and_embeddings_match_the_service(tier, client):
    mine = tier.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    theirs = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    assert mine.choices[0].text == theirs.choices[0].text
    streamed = "".join(
        c.choices[0].text
        for c in tier.completions.create(
            model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0, stream=True
        )
    )
    assert streamed == mine.choices[0].text

    mine = tier.embeddings.create(model=EMBED, input=["a cat", "a dog"])
    theirs = client.embeddings.create(model=EMBED, input=["a cat", "a dog"])
    assert [len(d.embedding) for d in mine.data] == [384, 384]
    for a, b in zip(mine.data, theirs.data):
        assert a.embedding == pytest.approx(b.embedding, abs=1e-5)
    assert mine.usage.prompt_tokens == theirs.usage.prompt_tokens
    assert [m.id for m in tier.models.list()] == [MODEL, EMBED]
    assert tier.models.retrieve(EMBED).id == EMBED


def test_errors_carry_the_sdk_names_and_the_body(tier):
    with pytest.raises(aitier.NotFoundError) as e:
        tier.chat.completions.create(model="no-such-model", messages=HI)
    assert (e.value.status_code, e.value.code, e.value.param) == (404, "model_not_found", "model")
    with pytest.raises(aitier.BadRequestError) as e:
        tier.chat.completions.create(model=MODEL, messages=HI, temperature=7)
    assert e.value.param == "temperature"
    assert isinstance(e.value, aitier.APIError)
    with pytest.raises(aitier.BadRequestError) as e:
        tier.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 9000}])
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(ValueError):
        tier.chat.completions.create(model=MODEL, messages="not a list")


def test_the_gil_is_released_while_the_engine_works(tier):
    spins = 0
    running = True

    def spin():
        nonlocal spins
        while running:
            spins += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        before = spins
        tier.chat.completions.create(model=MODEL, messages=HI, max_tokens=24, extra_body={"logit_bias": {"0": -100, "2": -100}})
        during = spins - before
    finally:
        running = False
        t.join()
    # Holding the GIL through the call, the other thread could not run at all.
    assert during > 1000, during


def test_keys_limits_and_ledger_are_the_services(tmp_path_factory):
    """An in-process tier on a service's database: the service's keys hold
    in-process, and in-process usage is in its ledger."""
    d = tmp_path_factory.mktemp("inprocess-keys")
    db = f"sqlite://{d}/aitier.db"
    with running_server(d / "server.log", ["--database-url", db, "--admin-token", ADMIN]) as url:
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
        key = make_key(admin, {"name": "monolith"})
        narrow = make_key(admin, {"name": "narrow", "models": [EMBED]})
        with aitier.Tier(config_file(d, db), api_key=key) as t:
            r = t.chat.completions.create(model=MODEL, messages=HI, max_tokens=4, temperature=0)
            with pytest.raises(aitier.AuthenticationError):
                t.with_api_key("sk-wrong").models.list()
            with pytest.raises(aitier.AuthenticationError):
                t.with_api_key(None).models.list()
            with pytest.raises(aitier.PermissionDeniedError) as e:
                t.with_api_key(narrow).chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
            assert e.value.code == "model_not_allowed"
            assert [m.id for m in t.with_api_key(narrow).models.list()] == [EMBED]
        # Closed: its rows are written, where the service reads them.
        rows = usage_rows(admin, "monolith", 1)
        assert [(row["endpoint"], row["requests"]) for row in rows] == [("/v1/chat/completions", 1)]
        assert rows[0]["prompt_tokens"] == r.usage.prompt_tokens
        assert rows[0]["completion_tokens"] == r.usage.completion_tokens
        # And the service takes the same key.
        c = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
        assert [m.id for m in c.models.list()]


def test_the_python_example_app_answers_from_its_embedded_tier(tmp_path):
    """examples/monolith.py, as its docstring runs it, answering its own
    route from several threads at once."""
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "examples/monolith.py"), config_file(tmp_path, f"sqlite://{tmp_path}/aitier.db")],
        env={**os.environ, "ASK_ADDR": "127.0.0.1:0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("app listening on "), line
        url = line.split()[-1]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(lambda q: httpx.post(f"{url}/ask", json={"question": q}, timeout=120), ["Hi?", "Why?", "How?", "Who?"])
            )
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert all(a.json()["answer"] and a.json()["tokens"] > 0 for a in answers)
        assert httpx.post(f"{url}/ask", json={}, timeout=30).status_code == 400
    finally:
        proc.terminate()
        proc.wait(timeout=30)
