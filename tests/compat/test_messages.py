"""The Anthropic Messages API through the official `anthropic` SDK: plain,
streamed with the SDK's stream helper, a tool round-trip, stop sequences,
count_tokens, and Anthropic-shaped errors."""

from typing import Literal

import anthropic
import pydantic
import pytest

from conftest import REQUEST_TIMEOUT_S

PROMPT = [{"role": "user", "content": "Name three colours."}]
# The current SDK no longer has sampling parameters (Anthropic's newest
# models refuse them); older SDKs and gateways still send them, and aitier
# takes them.
GREEDY = {"extra_body": {"temperature": 0}}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@pytest.fixture(scope="module")
def claude(base_url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=base_url, api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)


def _text(message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def test_plain_text_is_what_chat_says(claude, client, model):
    m = claude.messages.create(model=model, max_tokens=16, messages=PROMPT, **GREEDY)
    chat = client.chat.completions.create(model=model, messages=PROMPT, max_tokens=16, **GREEDY)
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert _text(m) == chat.choices[0].message.content
    assert m.stop_reason == {"length": "max_tokens", "stop": "end_turn"}[chat.choices[0].finish_reason]
    # Computed and cached prompt tokens are reported apart, as Anthropic does.
    assert m.usage.input_tokens + m.usage.cache_read_input_tokens == chat.usage.prompt_tokens
    assert m.usage.output_tokens == chat.usage.completion_tokens


def test_the_stream_helper_assembles_the_message(claude, model):
    with claude.messages.stream(model=model, max_tokens=16, messages=PROMPT, **GREEDY) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and _text(final) == text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


def test_a_system_prompt_and_a_stop_sequence(claude, model):
    base = claude.messages.create(model=model, max_tokens=24, messages=PROMPT, **GREEDY, system="Be brief.")
    words = _text(base).split()
    assert len(words) > 2, _text(base)
    stop = words[2]
    m = claude.messages.create(
        model=model, max_tokens=24, messages=PROMPT, **GREEDY, system="Be brief.", stop_sequences=[stop]
    )
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    assert _text(base).startswith(_text(m)) and stop not in _text(m)


def test_a_tool_round_trip(claude, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    m = claude.messages.create(
        model=model, max_tokens=80, messages=messages, tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"}, **GREEDY,
    )
    assert m.stop_reason == "tool_use"
    use = [b for b in m.content if b.type == "tool_use"][0]
    assert use.name == "get_weather" and isinstance(use.input["city"], str)
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
    ]
    final = claude.messages.create(
        model=model, max_tokens=40, messages=messages, tools=[WEATHER], tool_choice={"type": "none"}, **GREEDY
    )
    assert _text(final) and final.stop_reason in ("end_turn", "max_tokens")


def test_a_streamed_tool_use_is_parsed_by_the_helper(claude, model):
    with claude.messages.stream(
        model=model, max_tokens=80, messages=[{"role": "user", "content": "Weather in Rome?"}],
        tools=[WEATHER], tool_choice={"type": "any"}, **GREEDY,
    ) as stream:
        final = stream.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert isinstance(use.input["city"], str)
    assert final.stop_reason == "tool_use"


def test_count_tokens_is_the_prompt_the_model_sees(claude, model):
    n = claude.messages.count_tokens(model=model, messages=PROMPT, system="Be brief.")
    m = claude.messages.create(model=model, max_tokens=1, messages=PROMPT, system="Be brief.")
    assert n.input_tokens == m.usage.input_tokens + m.usage.cache_read_input_tokens
    with_tools = claude.messages.count_tokens(model=model, messages=PROMPT, system="Be brief.", tools=[WEATHER])
    assert with_tools.input_tokens > n.input_tokens


def test_errors_are_anthropic_shaped(claude, http, model):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.messages.create(model=model, max_tokens=8, messages=PROMPT, extra_body={"temperature": 1.5})
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "invalid_request_error"
    assert "temperature" in e.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="no-such-model", max_tokens=8, messages=PROMPT)
    assert e.value.body["error"]["type"] == "not_found_error"
    r = http.post("/v1/messages", json={"model": model, "messages": PROMPT})
    assert r.status_code == 400
    assert r.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"}}
    r = http.post("/v1/messages", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


class Colour(pydantic.BaseModel):
    name: Literal["red", "green", "blue"]
    hex: str


def test_structured_output_parses(claude, model):
    m = claude.messages.parse(
        model=model, max_tokens=60, messages=[{"role": "user", "content": "Pick a colour."}],
        output_format=Colour, **GREEDY,
    )
    assert isinstance(m.parsed_output, Colour)
    assert m.stop_reason == "end_turn"
