"""Legacy /v1/completions through the official SDK."""

import openai
import pytest

PROMPT = "The capital of France is"
OTHER = "Once upon a time"


def greedy(client, model, prompt=PROMPT, **kw):
    kw.setdefault("max_tokens", 8)
    return client.completions.create(model=model, prompt=prompt, temperature=0, **kw)


@pytest.fixture(scope="module")
def reference(client, model):
    return greedy(client, model)


def test_completion(reference, model):
    assert reference.object == "text_completion"
    assert reference.model == model
    assert len(reference.choices) == 1
    c = reference.choices[0]
    assert c.index == 0
    assert isinstance(c.text, str) and c.text
    assert c.finish_reason in ("stop", "length")
    assert c.logprobs is None
    u = reference.usage
    assert 0 < u.completion_tokens <= 8
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens


def test_default_max_tokens_is_16(client, model):
    r = client.completions.create(model=model, prompt=OTHER, temperature=0)
    assert r.usage.completion_tokens <= 16


def test_completion_stream_matches(client, model, reference):
    chunks = list(
        client.completions.create(
            model=model, prompt=PROMPT, temperature=0, max_tokens=8, stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "text_completion" for c in chunks)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == reference.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [reference.choices[0].finish_reason]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == reference.usage.completion_tokens


def test_completion_logprobs(client, model, reference):
    r = greedy(client, model, logprobs=2)
    c = r.choices[0]
    assert c.text == reference.choices[0].text
    lp = c.logprobs
    n = r.usage.completion_tokens
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    assert "".join(lp.tokens) == c.text
    assert all(x <= 0 for x in lp.token_logprobs)
    for tok, top in zip(lp.tokens, lp.top_logprobs):
        # A dict keyed by token text: two alternatives, unless they render the same.
        assert 1 <= len(top) <= 2
        assert all(v <= 0 for v in top.values())
        assert tok in top  # greedy: the chosen token is the most likely one
    assert lp.text_offset == sorted(lp.text_offset)
    # Offsets are into prompt + completion (OpenAI's convention) and follow the tokens.
    for i in range(1, n):
        assert lp.text_offset[i] - lp.text_offset[i - 1] == len(lp.tokens[i - 1])


def test_two_prompts_two_choices(client, model, reference):
    r = greedy(client, model, prompt=[PROMPT, OTHER])
    assert sorted(c.index for c in r.choices) == [0, 1]
    by_index = {c.index: c for c in r.choices}
    assert by_index[0].text == reference.choices[0].text
    assert by_index[1].text == greedy(client, model, prompt=OTHER).choices[0].text


def test_token_prompt(client, model, http):
    ids = http.post("/tokenize", json={"content": PROMPT, "add_special": False}).json()["tokens"]
    r = greedy(client, model, prompt=ids)
    assert r.usage.prompt_tokens == len(ids)
    assert r.choices[0].text


def test_stop_in_completion(client, model, reference):
    text = reference.choices[0].text
    words = [w for w in text.split() if len(w) >= 2 and text.find(w) > 0]
    if not words:
        pytest.skip(f"no stop word in {text!r}")
    stop = words[-1]
    r = greedy(client, model, stop=stop)
    assert r.choices[0].text == text[: text.find(stop)]
    assert r.choices[0].finish_reason == "stop"


def test_echo_rejected(client, model):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model, prompt=PROMPT, max_tokens=4, echo=True)
    assert e.value.param == "echo"


def test_logprobs_over_five_rejected(client, model):
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=model, prompt=PROMPT, max_tokens=4, logprobs=6)
    assert e.value.param == "logprobs"
