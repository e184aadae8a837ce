"""A model whose GGUF carries no chat template (Gemma 3 270M) takes one from
a file, and then chats and calls tools like any other; without the file only
legacy completions work."""

import json
from pathlib import Path

import httpx
import openai
import pytest

from conftest import REPO, REQUEST_TIMEOUT_S, running_server

GEMMA = REPO / "models" / "gemma-3-270m-q4_k_m.gguf"
TEMPLATE = REPO / "examples" / "templates" / "gemma3.jinja"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}},
                                          "required": ["city"]}}}


@pytest.fixture(scope="module")
def gemma_url(tmp_path_factory):
    if not GEMMA.is_file():
        pytest.fail(f"{GEMMA} missing: run scripts/fetch-model.sh gemma")
    tmp = tmp_path_factory.mktemp("gemma")
    args = ["--data-dir", str(tmp / "data"), "--model", f"gemma={GEMMA}", "--model", f"bare={GEMMA}",
            "--chat-template-file", f"gemma={TEMPLATE}", "--ctx-size", "1024", "--slots", "2"]
    with running_server(tmp / "gemma.log", args) as url:
        yield url


@pytest.fixture(scope="module")
def gemma(gemma_url):
    return openai.OpenAI(base_url=gemma_url + "/v1", api_key="unused", max_retries=0, timeout=REQUEST_TIMEOUT_S)


def test_chat_renders_the_template_file(gemma, gemma_url):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    r = gemma.chat.completions.create(model="gemma", messages=messages, temperature=0, max_tokens=8)
    assert r.choices[0].finish_reason in ("stop", "length")
    # The prompt is exactly the template's Gemma turns, control tokens included.
    expected = "<bos><start_of_turn>user\nBe brief.\n\nCapital of France?<end_of_turn>\n<start_of_turn>model\n"
    tokens = httpx.post(f"{gemma_url}/tokenize", json={"model": "gemma", "content": expected, "add_special": False},
                        timeout=REQUEST_TIMEOUT_S).json()["tokens"]
    assert tokens[:2] == [2, 105]  # <bos>, <start_of_turn> as single tokens
    assert r.usage.prompt_tokens == len(tokens)


def test_a_tool_call_round_trip_on_gemma(gemma):
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    r = gemma.chat.completions.create(model="gemma", messages=messages, tools=[WEATHER],
                                      tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                      temperature=0, max_tokens=60)
    assert r.choices[0].finish_reason == "tool_calls"
    (call,) = r.choices[0].message.tool_calls
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    # Gemma's template insists on alternating turns: the result goes in as a user turn.
    messages += [r.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
                 {"role": "user", "content": "Thanks. Anything else?"}]
    final = gemma.chat.completions.create(model="gemma", messages=messages, tools=[WEATHER], tool_choice="none",
                                          temperature=0, max_tokens=8)
    assert final.choices[0].message.tool_calls is None
    assert final.choices[0].finish_reason in ("stop", "length")


def test_without_a_template_only_completions_work(gemma):
    with pytest.raises(openai.BadRequestError) as e:
        gemma.chat.completions.create(model="bare", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert "chat_template_file" in e.value.message
    r = gemma.completions.create(model="bare", prompt="The capital of France is", max_tokens=4, temperature=0)
    assert r.usage.completion_tokens > 0
