"""/v1/embeddings as the official SDK and LangChain use it, on the default
embedding model: response shapes, both encodings (the SDK asks for base64
by default and decodes it), token-id input, refusals, the reference
vectors of tests/fixtures/embeddings, a relay through a second aitier, and
keys, limits and the ledger on embeddings."""

import json
import math
import uuid

import httpx
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from conftest import REPO, REQUEST_TIMEOUT_S, key_client, make_key, running_server, usage_rows

EMBED = "all-minilm-l6-v2"
ADMIN = "admin-token-for-embedding-tests-01"
FIXTURE = json.loads((REPO / "tests/fixtures/embeddings/all-minilm-l6-v2.json").read_text())["sentences"]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def test_shapes_and_usage(client):
    r = client.embeddings.create(model=EMBED, input=["Hello", "The quick brown fox jumps over the lazy dog."])
    assert r.object == "list"
    assert r.model == EMBED
    assert [d.index for d in r.data] == [0, 1]
    assert all(d.object == "embedding" and len(d.embedding) == 384 for d in r.data)
    assert all(abs(math.sqrt(sum(x * x for x in d.embedding)) - 1) < 1e-5 for d in r.data)
    # [CLS] hello [SEP] and [CLS] + 10 + [SEP], as the fixture counts them.
    assert r.usage.prompt_tokens == FIXTURE[0]["tokens"] + FIXTURE[2]["tokens"] == 15
    assert r.usage.total_tokens == r.usage.prompt_tokens


def test_float_and_base64_give_the_same_vectors(client, http):
    text = FIXTURE[4]["text"]
    decoded = client.embeddings.create(model=EMBED, input=text).data[0].embedding  # SDK default: base64
    floats = client.embeddings.create(model=EMBED, input=text, encoding_format="float").data[0].embedding
    assert decoded == pytest.approx(floats, abs=1e-7)
    raw = http.post("/v1/embeddings", json={"model": EMBED, "input": text, "encoding_format": "base64"}).json()
    assert isinstance(raw["data"][0]["embedding"], str)
    plain = http.post("/v1/embeddings", json={"model": EMBED, "input": text}).json()
    assert isinstance(plain["data"][0]["embedding"], list)


def test_vectors_match_the_reference(client):
    texts = [s["text"] for s in FIXTURE]
    r = client.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert len(r.data) == len(FIXTURE) == 30
    for s, d in zip(FIXTURE, r.data):
        assert cosine(s["embedding"], d.embedding) >= 0.999, s["text"]
    assert r.usage.prompt_tokens == sum(s["tokens"] for s in FIXTURE)


def test_token_ids_embed_like_their_text(client):
    s = FIXTURE[3]
    one = client.embeddings.create(model=EMBED, input=s["ids"], encoding_format="float")
    many = client.embeddings.create(model=EMBED, input=[s["ids"], FIXTURE[0]["ids"]], encoding_format="float")
    text = client.embeddings.create(model=EMBED, input=s["text"], encoding_format="float")
    assert one.usage.prompt_tokens == len(s["ids"])
    assert cosine(one.data[0].embedding, text.data[0].embedding) > 0.99999
    assert many.data[0].embedding == pytest.approx(one.data[0].embedding, abs=1e-5)


def test_refusals_name_the_parameter(client, model):
    cases = [
        (dict(input=""), "input"),
        (dict(input=[]), "input"),
        (dict(input=["ok", ""]), "input"),
        (dict(input="x", dimensions=64), "dimensions"),
        (dict(input=[[1, 2], [99999999]]), "input"),
        (dict(input="x", encoding_format="hex"), "encoding_format"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.embeddings.create(model=EMBED, **kwargs)
        assert e.value.param == param, (kwargs, e.value.body)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=model, input="a chat model")
    assert e.value.code == "model_not_supported"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}])
    assert e.value.code == "model_not_supported"
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")


def test_too_long_input_is_refused_by_index_or_truncated_on_request(client):
    long = FIXTURE[29]["text"] + " and then some more words"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=EMBED, input=["short", long])
    assert e.value.code == "context_length_exceeded"
    assert "input[1]" in e.value.message
    r = client.embeddings.create(
        model=EMBED, input=long, encoding_format="float", extra_body={"truncate_prompt_tokens": -1}
    )
    assert r.usage.prompt_tokens == 256
    assert cosine(r.data[0].embedding, FIXTURE[29]["embedding"]) >= 0.999


def test_langchain_embeds_documents_and_queries(base_url):
    # Without check_embedding_ctx_length LangChain tokenizes with tiktoken
    # (OpenAI's vocabulary) and sends those ids; every non-OpenAI server
    # needs it off.
    emb = OpenAIEmbeddings(
        model=EMBED, base_url=base_url + "/v1", api_key="unused", check_embedding_ctx_length=False
    )
    docs = emb.embed_documents([FIXTURE[26]["text"], FIXTURE[27]["text"], FIXTURE[9]["text"]])
    assert len(docs) == 3 and all(len(d) == 384 for d in docs)
    for got, s in zip(docs, [FIXTURE[26], FIXTURE[27], FIXTURE[9]]):
        assert cosine(got, s["embedding"]) >= 0.999
    query = emb.embed_query("Someone is making music.")
    # The guitar sentences are nearer to the query than the German one.
    assert cosine(query, docs[0]) > cosine(query, docs[2])
    assert cosine(query, docs[1]) > cosine(query, docs[2])


def test_a_relay_serves_the_same_vectors(base_url, client, tmp_path):
    spec = f"{EMBED}={base_url}/v1#{EMBED}"
    with running_server(tmp_path / "relay.log", ["--data-dir", str(tmp_path / "data"), "--upstream", spec]) as url:
        relay = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)
        texts = [FIXTURE[1]["text"], FIXTURE[13]["text"]]
        direct = client.embeddings.create(model=EMBED, input=texts)
        relayed = relay.embeddings.create(model=EMBED, input=texts)
        assert relayed.usage.prompt_tokens == direct.usage.prompt_tokens
        for a, b in zip(direct.data, relayed.data):
            assert a.embedding == pytest.approx(b.embedding, abs=1e-7)
        with pytest.raises(openai.BadRequestError) as e:
            relay.embeddings.create(model=EMBED, input="x", dimensions=7)
        assert e.value.param == "dimensions"


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embed-tenancy")
    with running_server(tmp / "server.log", ["--data-dir", str(tmp / "data"), "--admin-token", ADMIN]) as url:
        yield url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)


def test_keys_allow_lists_and_the_ledger_apply(tier):
    url, admin = tier
    key = make_key(admin, {"name": f"chat-{uuid.uuid4().hex[:6]}", "models": ["smollm2-135m-instruct"]})
    with pytest.raises(openai.AuthenticationError):  # once a key exists, no more open mode
        key_client(url, "sk-aitier-000000000000-" + "0" * 32).embeddings.create(model=EMBED, input="x")
    with pytest.raises(openai.PermissionDeniedError) as e:
        key_client(url, key).embeddings.create(model=EMBED, input="x")
    assert e.value.code == "model_not_allowed"
    name = f"emb-{uuid.uuid4().hex[:6]}"
    c = key_client(url, make_key(admin, {"name": name}))
    sent = [c.embeddings.create(model=EMBED, input=[s["text"] for s in FIXTURE[i : i + 3]]) for i in (0, 3, 6)]
    rows = usage_rows(admin, name, 3)
    assert len(rows) == 1 and rows[0]["endpoint"] == "/v1/embeddings"
    assert rows[0]["requests"] == 3
    assert rows[0]["prompt_tokens"] == sum(r.usage.prompt_tokens for r in sent)
    assert rows[0]["completion_tokens"] == 0


def test_tokens_per_minute_and_budgets_hold_on_embeddings(tier):
    url, admin = tier
    text = FIXTURE[4]["text"]  # 13 tokens
    c = key_client(url, make_key(admin, {"name": f"tpm-{uuid.uuid4().hex[:6]}", "tpm": 40}))
    for _ in range(3):
        c.embeddings.create(model=EMBED, input=text)
    with pytest.raises(openai.RateLimitError) as e:
        c.embeddings.create(model=EMBED, input=text)
    assert e.value.code == "rate_limit_exceeded"
    with pytest.raises(openai.RateLimitError) as e:
        c.embeddings.create(model=EMBED, input=FIXTURE[28]["text"])  # 194 tokens: never fits
    assert "Request too large" in e.value.message
    # Admitted while the budget is not spent (13, then 26 of 20), then refused.
    c = key_client(url, make_key(admin, {"name": f"budget-{uuid.uuid4().hex[:6]}", "budget_tokens": 20}))
    c.embeddings.create(model=EMBED, input=text)
    c.embeddings.create(model=EMBED, input=text)
    with pytest.raises(openai.RateLimitError) as e:
        c.embeddings.create(model=EMBED, input=text)
    assert e.value.code == "insufficient_quota"
