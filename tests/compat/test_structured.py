"""Structured outputs and tool calls through the real OpenAI SDK and LangChain,
on the default 135M model: what the client asked for always parses."""

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

# --- structured outputs --------------------------------------------------------


# Every string has a bound: a 135M model can repeat itself inside an unbounded
# string until max_tokens, and then the SDK rightly refuses to parse it.
Short = Annotated[str, Field(max_length=30)]


class City(BaseModel):
    name: Short
    country: Short
    population_millions: float
    landmarks: list[Short] = Field(max_length=3)


PARSE_PROMPTS = [
    "Describe Paris.", "Describe Tokyo.", "Describe Cairo.", "Describe Lima.", "Describe Oslo.",
    "Tell me about New York.", "Tell me about Sydney.", "Tell me about Mumbai.", "Tell me about Rome.",
    "Give facts on Berlin.", "Give facts on Nairobi.", "Give facts on Toronto.", "Give facts on Seoul.",
    "What is Madrid like?", "What is Bangkok like?", "What is Lagos like?", "What is Dublin like?",
    "Summarise Mexico City.", "Summarise Istanbul.", "Summarise Buenos Aires.",
]


def test_parse_returns_a_parsed_object_for_twenty_prompts(client, model):
    def parse(prompt):
        r = client.chat.completions.parse(
            model=model, messages=[{"role": "user", "content": prompt}], response_format=City,
            temperature=0, max_tokens=300,
        )
        return r.choices[0]

    with ThreadPoolExecutor(4) as pool:
        choices = list(pool.map(parse, PARSE_PROMPTS))
    failures = [c for c in choices if not isinstance(c.message.parsed, City)]
    assert failures == []
    assert all(c.finish_reason == "stop" for c in choices)


STRICT_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 60},
        "priority": {"type": "string", "enum": ["low", "medium", "high"]},
        "done": {"type": "boolean"},
        "estimate_hours": {"type": "integer", "minimum": 0, "maximum": 100},
        "owner": {
            "type": "object",
            "properties": {"name": {"type": "string", "maxLength": 40}, "team": {"type": "string", "maxLength": 40}},
            "required": ["name", "team"],
            "additionalProperties": False,
        },
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"order": {"type": "integer"}, "text": {"type": "string", "maxLength": 60}},
                "required": ["order", "text"],
                "additionalProperties": False,
            },
            "minItems": 1,
            "maxItems": 3,
        },
        "tags": {"type": "array", "items": {"type": "string", "enum": ["bug", "feature", "chore"]}, "maxItems": 3},
    },
    "required": ["title", "priority", "done", "estimate_hours", "owner", "steps", "tags"],
    "additionalProperties": False,
}

TASKS = [f"Plan a task: {t}." for t in [
    "fix the login page", "write release notes", "upgrade the database", "add dark mode", "clean the backlog",
    "rotate the keys", "profile the engine", "translate the docs", "review the budget", "migrate the CI",
    "design a logo", "hire a tester", "archive old logs", "rename the service", "add a health check",
    "test on a phone", "measure latency", "plan the offsite", "refactor the parser", "update the licence",
    "split the monolith", "add metrics", "write a tutorial", "audit the access", "fix a memory leak",
    "add retries", "shrink the image", "cache the results", "tune the thresholds", "label the data",
    "document the API", "remove dead code", "speed up the build", "back up the disks", "patch the kernel",
    "order new laptops", "survey the users", "draft the roadmap", "fix the flaky test", "add pagination",
    "localise dates", "encrypt the backups", "replace the logger", "bump the version", "add a changelog",
    "check the links", "compress the assets", "add an index", "trim the logs", "ship the beta",
]]


def test_a_strict_schema_validates_for_fifty_prompts(client, model):
    assert len(TASKS) == 50
    fmt = {"type": "json_schema", "json_schema": {"name": "task", "schema": STRICT_SCHEMA, "strict": True}}

    def ask(prompt):
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt}], response_format=fmt,
            # Room for the longest output the schema allows (every string at
            # its maxLength, one character a token): a degenerate answer that
            # fills them is still valid, but only if it is not cut short.
            temperature=0, max_tokens=1000,
        )
        return r.choices[0].message.content

    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(ask, TASKS))
    invalid = []
    for text in outputs:
        try:
            jsonschema.validate(json.loads(text), STRICT_SCHEMA)
        except (ValueError, jsonschema.ValidationError) as e:
            invalid.append((text, str(e)[:200]))
    assert invalid == []


def test_json_object_mode_gives_an_object(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Give me a JSON object about a cat."}],
        response_format={"type": "json_object"}, temperature=0, max_tokens=200,
    )
    text = r.choices[0].message.content
    # Free-form JSON has no bound a small model cannot run past: either it
    # closed the object, or the budget cut it while it was still one.
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:
        assert text.startswith("{") and r.usage.completion_tokens == 200


def test_constrained_tokens_have_logprobs(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Describe Rome."}], temperature=0, max_tokens=300,
        response_format={"type": "json_schema", "json_schema": {
            "name": "City", "schema": openai.lib._pydantic.to_strict_json_schema(City), "strict": True}},
        logprobs=True, top_logprobs=2,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    City.model_validate_json(choice.message.content)
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    assert len(choice.logprobs.content) == r.usage.completion_tokens
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)


def test_an_unsupported_schema_keyword_is_a_400_naming_it(client, model):
    schema = {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "integer"},
                                                        "uniqueItems": True}}}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}], max_tokens=5,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": schema}},
        )
    assert e.value.param == "response_format"
    assert "uniqueItems" in e.value.message and "/properties/ids" in e.value.message


def test_guided_extensions_constrain_the_output(client, model):
    def ask(**extra):
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Answer."}], temperature=0, max_tokens=20,
            extra_body=extra,
        )
        return r.choices[0].message.content

    assert ask(guided_choice=["alpha", "beta"]) in ("alpha", "beta")
    code = ask(guided_regex="[A-Z]{2}[0-9]{2}")
    assert len(code) == 4 and code[:2].isupper() and code[2:].isdigit(), code
    assert ask(grammar='root ::= "yes" | "no"') in ("yes", "no")
    legacy = client.completions.create(model=model, prompt="The answer is", max_tokens=5, temperature=0,
                                       extra_body={"guided_choice": ["42", "7"]})
    assert legacy.choices[0].text in ("42", "7")


# --- tools ---------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}},
                       "required": ["city"], "additionalProperties": False},
        "strict": True,
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "description": "The time in a city",
                                         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def test_a_required_call_round_trip(client, model):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER, TIME],
                                       tool_choice="required", temperature=0, max_tokens=100)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name in ("get_weather", "get_time")
    args = json.loads(call.function.arguments)
    assert isinstance(args.get("city"), str)

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"sky": "clear", "temp_c": 21})}]
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER, TIME],
                                           tool_choice="none", temperature=0, max_tokens=60)
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].message.content


def test_a_named_function_is_the_one_called(client, model):
    r = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hello there"}], tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}}, temperature=0, max_tokens=60,
    )
    calls = r.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_time"]
    json.loads(calls[0].function.arguments)


FEW_SHOT = [
    {"role": "user", "content": "Weather in Oslo and Rome?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}},
    ]},
    {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
    {"role": "tool", "tool_call_id": "call_2", "content": "warm"},
    {"role": "assistant", "content": "Oslo is cold and Rome is warm."},
    {"role": "user", "content": "Weather in Paris and London?"},
]


def test_parallel_calls_and_their_switch(client, model):
    def calls(parallel):
        r = client.chat.completions.create(model=model, messages=FEW_SHOT, tools=[WEATHER], tool_choice="required",
                                           parallel_tool_calls=parallel, temperature=0, max_tokens=120)
        return [json.loads(c.function.arguments)["city"] for c in r.choices[0].message.tool_calls]

    assert calls(True) == ["Paris", "London"]
    assert calls(False) == ["Paris"]


def test_streamed_calls_assemble_in_the_sdk_helper(client, model):
    kwargs = dict(model=model, messages=FEW_SHOT, tools=[WEATHER], tool_choice="required", temperature=0,
                  max_tokens=120)
    whole = client.chat.completions.create(**kwargs).choices[0].message.tool_calls
    with client.chat.completions.stream(**kwargs) as stream:
        deltas = [e for e in stream if e.type == "tool_calls.function.arguments.delta"]
        final = stream.get_final_completion()
    streamed = final.choices[0].message.tool_calls
    assert final.choices[0].finish_reason == "tool_calls"
    assert [(c.function.name, c.function.arguments) for c in streamed] == \
        [(c.function.name, c.function.arguments) for c in whole]
    assert len(deltas) > len(streamed)  # arguments arrived in pieces


# --- LangChain -----------------------------------------------------------------


class Person(BaseModel):
    name: str = Field(max_length=40)
    age: int = Field(ge=0, le=150)
    role: Literal["engineer", "doctor", "teacher"]


def test_langchain_structured_output_and_tools(base_url, model):
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(base_url=base_url + "/v1", api_key="unused", model=model, temperature=0, max_tokens=200)
    person = llm.with_structured_output(Person, method="json_schema").invoke("Invent an engineer called Ada.")
    assert isinstance(person, Person)

    @tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        return "sunny"

    msg = llm.bind_tools([get_weather], tool_choice="get_weather").invoke("Weather in Lima?")
    assert [c["name"] for c in msg.tool_calls] == ["get_weather"]
    assert isinstance(msg.tool_calls[0]["args"]["city"], str)
