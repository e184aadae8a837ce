"""aitier in front of aitier: the SDK sees through a relay what it sees
directly, errors and extras included.

The relay serves the session's server as an upstream under the same model
name, so every call can be made both ways and compared.
"""

import anthropic
import httpx
import openai
import pytest

from conftest import REQUEST_TIMEOUT_S, running_server

PROMPT = [{"role": "user", "content": "Name three colours."}]


@pytest.fixture(scope="module")
def relay_url(base_url: str, model: str, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("relay")
    spec = f"{model}={base_url}/v1#{model}"
    with running_server(tmp / "relay.log", ["--data-dir", str(tmp / "data"), "--upstream", spec]) as url:
        yield url


@pytest.fixture(scope="module")
def relay(relay_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=relay_url + "/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)


def both(client, relay):
    return [("direct", client), ("relay", relay)]


def test_greedy_chat_and_usage_are_the_same(client, relay, model):
    answers = [
        c.chat.completions.create(model=model, messages=PROMPT, max_tokens=16, temperature=0)
        for _, c in both(client, relay)
    ]
    direct, relayed = answers
    assert relayed.choices[0].message.content == direct.choices[0].message.content
    assert relayed.usage.prompt_tokens == direct.usage.prompt_tokens
    assert relayed.usage.completion_tokens == direct.usage.completion_tokens
    assert relayed.choices[0].finish_reason == direct.choices[0].finish_reason


def test_streams_carry_the_same_text_and_the_upstreams_fingerprint(client, relay, model):
    texts, fingerprints = [], []
    for _, c in both(client, relay):
        chunks = list(
            c.chat.completions.create(
                model=model,
                messages=PROMPT,
                max_tokens=16,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        texts.append("".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices))
        fingerprints.append({ch.system_fingerprint for ch in chunks})
        assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert texts[0] == texts[1] and texts[0]
    assert fingerprints[0] == fingerprints[1] and len(fingerprints[0]) == 1


def test_legacy_logprobs_come_through(client, relay, model):
    out = [
        c.completions.create(model=model, prompt="1, 2, 3,", max_tokens=3, temperature=0, logprobs=2)
        for _, c in both(client, relay)
    ]
    direct, relayed = (o.choices[0].logprobs for o in out)
    assert relayed.tokens == direct.tokens
    assert relayed.token_logprobs == pytest.approx(direct.token_logprobs)
    assert [sorted(t) for t in relayed.top_logprobs] == [sorted(t) for t in direct.top_logprobs]


def test_context_length_exceeded_keeps_its_code_and_param(client, relay, model):
    for name, c in both(client, relay):
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model=model, messages=PROMPT, max_tokens=1_000_000)
        assert e.value.code == "context_length_exceeded", name
        assert e.value.param == "messages", name


def test_a_bad_parameter_is_named_the_same_way(client, relay, model):
    for name, c in both(client, relay):
        with pytest.raises(openai.BadRequestError) as e:
            c.completions.create(model=model, prompt="x", max_tokens=2, logit_bias={"999999": 5})
        assert e.value.param == "logit_bias", name


def test_tokenize_passes_through_to_the_upstream(base_url, relay_url, model):
    got = []
    for url in (base_url, relay_url):
        r = httpx.post(f"{url}/tokenize", json={"model": model, "content": "Hello world", "with_pieces": True})
        assert r.status_code == 200, r.text
        got.append(r.json()["tokens"])
    assert got[0] == got[1]
    ids = [t["id"] for t in got[1]]
    r = httpx.post(f"{relay_url}/detokenize", json={"model": model, "tokens": ids})
    assert r.status_code == 200 and r.json()["content"] == "Hello world"


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                       "required": ["city"]},
    },
}
ASK_WEATHER = [{"role": "user", "content": "Weather in Paris?"}]


def test_tool_calls_and_structured_outputs_pass_through(client, relay, model):
    calls = []
    for _, c in both(client, relay):
        r = c.chat.completions.create(model=model, messages=ASK_WEATHER, tools=[WEATHER], tool_choice="required",
                                      temperature=0, max_tokens=60)
        assert r.choices[0].finish_reason == "tool_calls"
        calls.append([(t.function.name, t.function.arguments) for t in r.choices[0].message.tool_calls])
    assert calls[0] == calls[1]
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}}}
    texts = [c.chat.completions.create(model=model, messages=PROMPT, response_format=fmt, temperature=0,
                                       max_tokens=30).choices[0].message.content for _, c in both(client, relay)]
    assert texts[0] == texts[1] and texts[0].startswith('{"n": ')
    # An earlier call and its result go upstream as they came.
    follow = ASK_WEATHER + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    finals = [c.chat.completions.create(model=model, messages=follow, temperature=0, max_tokens=16)
              .choices[0].message.content for _, c in both(client, relay)]
    assert finals[0] == finals[1]


def test_streamed_tool_calls_pass_through(client, relay, model):
    finals = []
    for _, c in both(client, relay):
        with c.chat.completions.stream(model=model, messages=ASK_WEATHER, tools=[WEATHER], tool_choice="required",
                                       temperature=0, max_tokens=60) as s:
            final = s.get_final_completion()
        assert final.choices[0].finish_reason == "tool_calls"
        finals.append([(t.function.name, t.function.arguments) for t in final.choices[0].message.tool_calls])
    assert finals[0] == finals[1]


def test_responses_are_translated_for_an_upstream_that_speaks_chat(client, relay, model):
    kw = dict(model=model, input=PROMPT[0]["content"], max_output_tokens=16, temperature=0)
    direct, relayed = client.responses.create(**kw), relay.responses.create(**kw)
    assert relayed.output_text == direct.output_text and relayed.output_text
    assert relayed.usage.input_tokens == direct.usage.input_tokens
    assert relayed.usage.output_tokens == direct.usage.output_tokens
    events = list(relay.responses.create(**kw, stream=True))
    assert events[-1].response.output_text == direct.output_text
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == direct.output_text
    # The relay keeps its own responses: it continues the conversation itself.
    follow = relay.responses.create(**{**kw, "input": "And one more?"}, previous_response_id=relayed.id)
    assert follow.usage.input_tokens > relayed.usage.input_tokens + relayed.usage.output_tokens


def test_messages_are_translated_for_an_upstream_that_speaks_chat(base_url, relay_url, model):
    direct, relayed = (
        anthropic.Anthropic(base_url=u, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)
        for u in (base_url, relay_url)
    )
    kw = dict(model=model, max_tokens=16, messages=PROMPT, extra_body={"temperature": 0})
    a, b = direct.messages.create(**kw), relayed.messages.create(**kw)
    assert [c.text for c in b.content] == [c.text for c in a.content]
    assert b.stop_reason == a.stop_reason and b.usage.output_tokens == a.usage.output_tokens
    with relayed.messages.stream(**kw) as s:
        assert "".join(s.text_stream) == a.content[0].text
    tool = {"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                                    "required": ["city"]}}
    with relayed.messages.stream(
        **{**kw, "max_tokens": 60, "messages": [{"role": "user", "content": "Weather in Paris?"}]},
        tools=[tool], tool_choice={"type": "tool", "name": "get_weather"},
    ) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert isinstance([c for c in final.content if c.type == "tool_use"][0].input["city"], str)
