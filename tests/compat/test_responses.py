"""The Responses API through the official SDK: plain, streamed (raw events
and the stream helper), a function tool round-trip, structured output,
continuation by `previous_response_id`, and stored responses."""

import json
from typing import Literal

import openai
import pydantic
import pytest

PROMPT = "Name three colours."
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_plain_text_is_what_chat_says_with_the_same_usage(client, model):
    r = client.responses.create(model=model, input=PROMPT, max_output_tokens=16, temperature=0)
    chat = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=16, temperature=0
    )
    assert r.object == "response" and r.id.startswith("resp_")
    assert r.output_text == chat.choices[0].message.content
    assert r.usage.input_tokens == chat.usage.prompt_tokens
    assert r.usage.output_tokens == chat.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    expected = "incomplete" if chat.choices[0].finish_reason == "length" else "completed"
    assert r.status == expected
    if expected == "incomplete":
        assert r.incomplete_details.reason == "max_output_tokens"


def test_a_stream_is_the_event_sequence_numbered_and_adds_up(client, model):
    events = list(client.responses.create(model=model, input=PROMPT, max_output_tokens=16, temperature=0, stream=True))
    types = [e.type for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:-1] == ["response.output_text.done", "response.content_part.done", "response.output_item.done"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    final = events[-1].response
    assert text and final.output_text == text
    assert final.usage.output_tokens > 0
    # What was streamed is what is stored.
    assert client.responses.retrieve(final.id).output_text == text


class Colour(pydantic.BaseModel):
    name: Literal["red", "green", "blue"]


def test_the_stream_helper_gives_the_final_parsed_response(client, model):
    # A closed schema ends the answer, so the response completes (the helper
    # has no final response for one cut short, with OpenAI's API too).
    with client.responses.stream(
        model=model, input="Pick a colour.", text_format=Colour, max_output_tokens=40, temperature=0
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed"
    assert final.output_text == "".join(deltas)
    assert isinstance(final.output_parsed, Colour)


def _call(client, model, **kw):
    r = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_output_tokens=60,
        **kw,
    )
    calls = [o for o in r.output if o.type == "function_call"]
    assert calls, r.output
    call = calls[0]
    assert call.name == "get_weather" and call.call_id.startswith("call_")
    assert isinstance(json.loads(call.arguments)["city"], str)
    return r, call


def test_a_function_tool_round_trip_by_resending_the_items(client, model):
    r, call = _call(client, model)
    follow = client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            *[o.model_dump(exclude_none=True) for o in r.output],
            {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"sky": "clear"})},
        ],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_output_tokens=40,
    )
    assert follow.output_text
    assert not [o for o in follow.output if o.type == "function_call"]


def test_a_streamed_call_arrives_as_argument_deltas(client, model):
    events = list(
        client.responses.create(
            model=model, input="What is the weather in Paris?", tools=[WEATHER], tool_choice="required",
            temperature=0, max_output_tokens=60, stream=True,
        )
    )
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done
    for d in done:
        deltas = "".join(
            e.delta for e in events if e.type == "response.function_call_arguments.delta" and e.item_id == d.item_id
        )
        assert d.arguments == deltas and d.name == "get_weather"
        assert json.loads(deltas)["city"]
    final = events[-1].response
    assert [o.arguments for o in final.output if o.type == "function_call"] == [d.arguments for d in done]


def test_previous_response_id_continues_the_conversation(client, model):
    first = client.responses.create(
        model=model, input="My name is Ana. Say hello to me.", max_output_tokens=12, temperature=0
    )
    second = client.responses.create(
        model=model, previous_response_id=first.id, input="What is my name?", max_output_tokens=12, temperature=0
    )
    assert second.previous_response_id == first.id
    # The whole conversation was the prompt, most of it from the prefix cache.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.usage.input_tokens_details.cached_tokens > 0
    items = list(client.responses.input_items.list(second.id, order="asc"))
    texts = [c.text for i in items if i.type == "message" for c in i.content]
    assert texts == ["My name is Ana. Say hello to me.", first.output_text, "What is my name?"]
    assert all(i.id for i in items)
    # Resending the same conversation by hand gives the same answer.
    by_hand = client.responses.create(
        model=model,
        input=[
            {"role": "user", "content": "My name is Ana. Say hello to me."},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "What is my name?"},
        ],
        max_output_tokens=12,
        temperature=0,
    )
    assert by_hand.output_text == second.output_text


def test_a_tool_output_continues_from_the_stored_call(client, model):
    r, call = _call(client, model)
    follow = client.responses.create(
        model=model,
        previous_response_id=r.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],
        tool_choice="none",
        temperature=0,
        max_output_tokens=40,
    )
    assert follow.output_text


class City(pydantic.BaseModel):
    name: str
    country: str
    population_millions: float


def test_text_format_json_schema_parses(client, model):
    r = client.responses.parse(
        model=model, input="Describe Paris as JSON.", text_format=City, temperature=0, max_output_tokens=120
    )
    assert isinstance(r.output_parsed, City)
    raw = client.responses.create(
        model=model,
        input="Pick a colour.",
        text={"format": {"type": "json_schema", "name": "colour", "schema": Colour.model_json_schema(), "strict": True}},
        temperature=0,
        max_output_tokens=40,
    )
    assert raw.status == "completed"
    Colour.model_validate_json(raw.output_text)


def test_retrieve_list_and_delete(client, model):
    r = client.responses.create(model=model, input=PROMPT, max_output_tokens=4, temperature=0, metadata={"k": "v"})
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.metadata == {"k": "v"}
    page = client.responses.input_items.list(r.id)
    assert [c.text for c in page.data[0].content] == [PROMPT]
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)
    unstored = client.responses.create(model=model, input=PROMPT, max_output_tokens=2, store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_refusals_name_what_is_not_supported(client, model):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=model, input="x", tools=[{"type": "web_search_preview"}])
    assert e.value.param == "tools[0].type" and "web_search_preview" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(
            model=model, input=[{"role": "user", "content": [{"type": "input_image", "image_url": "http://x/y.png"}]}]
        )
    assert e.value.param == "input[0].content[0].type"
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model=model, input="x", previous_response_id="resp_nope")
    assert e.value.code == "previous_response_not_found"
