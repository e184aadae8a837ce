"""Error statuses, shapes and the SDK exception each one maps to."""

import json

import httpx
import openai
import pytest

MSG = [{"role": "user", "content": "Hi"}]


def assert_openai_error(r: httpx.Response, status: int, param=None, code=None):
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}
    assert isinstance(err["message"], str) and err["message"]
    if status < 500:
        assert err["type"] == "invalid_request_error"
    if param is not None:
        assert err["param"] == param
    if code is not None:
        assert err["code"] == code
    assert r.headers.get("x-request-id")
    return err


def raises(exc, fn, **kw):
    with pytest.raises(exc) as e:
        fn(**kw)
    return e.value


# -- through the SDK ---------------------------------------------------------


def test_unknown_model(client):
    e = raises(openai.NotFoundError, client.chat.completions.create, model="nope", messages=MSG, max_tokens=2)
    assert e.status_code == 404
    assert e.code == "model_not_found"


def test_unknown_model_completions(client):
    e = raises(openai.NotFoundError, client.completions.create, model="nope", prompt="x", max_tokens=2)
    assert e.code == "model_not_found"


def test_empty_messages(client, model):
    e = raises(openai.BadRequestError, client.chat.completions.create, model=model, messages=[], max_tokens=2)
    assert e.param == "messages"
    assert e.type == "invalid_request_error"


def test_unknown_role(client, model):
    e = raises(
        openai.BadRequestError,
        client.chat.completions.create,
        model=model,
        messages=[{"role": "wizard", "content": "Hi"}],
        max_tokens=2,
    )
    assert e.param == "messages[0].role"


def test_temperature_out_of_range(client, model):
    e = raises(
        openai.BadRequestError, client.chat.completions.create, model=model, messages=MSG, temperature=5, max_tokens=2
    )
    assert e.param == "temperature"


def test_context_length_exceeded(client, model):
    e = raises(
        openai.BadRequestError, client.chat.completions.create, model=model, messages=MSG, max_tokens=1_000_000
    )
    assert e.code == "context_length_exceeded"


def test_long_prompt_exceeds_context(client, model):
    long = "word " * 5000
    e = raises(
        openai.BadRequestError,
        client.chat.completions.create,
        model=model,
        messages=[{"role": "user", "content": long}],
        max_tokens=4,
    )
    assert e.code == "context_length_exceeded"


def test_n_zero(client, model):
    e = raises(openai.BadRequestError, client.chat.completions.create, model=model, messages=MSG, n=0, max_tokens=2)
    assert e.param == "n"


def test_n_too_large(client, model):
    e = raises(openai.BadRequestError, client.chat.completions.create, model=model, messages=MSG, n=17, max_tokens=2)
    assert e.param == "n"


def test_too_many_stops(client, model):
    e = raises(
        openai.BadRequestError,
        client.chat.completions.create,
        model=model,
        messages=MSG,
        stop=["a", "b", "c", "d", "e"],
        max_tokens=2,
    )
    assert e.param == "stop"


def test_unknown_tool_type_rejected(client, model):
    tools = [{"type": "web_search"}]
    e = raises(
        openai.BadRequestError, client.chat.completions.create, model=model, messages=MSG, tools=tools, max_tokens=2
    )
    assert e.param == "tools[0].type"


@pytest.mark.parametrize(
    "kwargs, param",
    [
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"logit_bias": {"not-a-token": 1}}, "logit_bias"),
        ({"top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]},
         "messages[0].content[0].type"),
    ],
    ids=["json_schema_without_schema", "top_logprobs_without_logprobs", "stream_options_without_stream", "logit_bias_key",
         "top_p_zero", "image_part"],
)
def test_unsupported_or_invalid_param(client, model, kwargs, param):
    kwargs = {"messages": MSG, **kwargs}
    e = raises(openai.BadRequestError, client.chat.completions.create, model=model, max_tokens=2, **kwargs)
    assert e.param == param
    assert e.type == "invalid_request_error"


def test_sdk_extra_fields_are_ignored(client, model):
    """Fields the SDK sends that do not change generation must not be rejected."""
    r = client.chat.completions.create(
        model=model, messages=MSG, max_tokens=2, store=False, metadata={"k": "v"}, user="u1",
        parallel_tool_calls=True, tool_choice="none",
    )
    assert r.choices[0].message.role == "assistant"


def test_stream_error_before_stream(client, model):
    """Validation errors on a streaming request are a plain HTTP error, not an SSE body."""
    e = raises(
        openai.BadRequestError,
        client.chat.completions.create,
        model=model,
        messages=MSG,
        temperature=-1,
        stream=True,
        max_tokens=2,
    )
    assert e.param == "temperature"


def test_error_carries_request_id(client, model):
    e = raises(
        openai.NotFoundError,
        client.chat.completions.create,
        model="nope",
        messages=MSG,
        extra_headers={"x-request-id": "err-42"},
    )
    assert e.request_id == "err-42"


# -- raw HTTP ----------------------------------------------------------------


def post_raw(http, content: bytes, path="/v1/chat/completions"):
    return http.post(path, content=content, headers={"content-type": "application/json"})


def test_truncated_json(http, model):
    r = post_raw(http, b'{"model": "%s", "messages": [{"role"' % model.encode())
    assert_openai_error(r, 400)


def test_not_json(http):
    r = post_raw(http, b"hello")
    assert_openai_error(r, 400)


def test_messages_as_string(http, model):
    r = http.post("/v1/chat/completions", json={"model": model, "messages": "Hi"})
    assert_openai_error(r, 400, param="messages")


def test_max_tokens_as_string(http, model):
    r = http.post("/v1/chat/completions", json={"model": model, "messages": MSG, "max_tokens": "ten"})
    assert_openai_error(r, 400, param="max_tokens")


def test_missing_model(http):
    r = http.post("/v1/chat/completions", json={"messages": MSG})
    assert_openai_error(r, 400, param="model")


def test_role_wrong_type(http, model):
    r = http.post("/v1/chat/completions", json={"model": model, "messages": [{"role": 5, "content": "x"}]})
    assert_openai_error(r, 400, param="messages[0].role")


def test_body_too_large(http, model):
    filler = "x" * (10 * 1024 * 1024)
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": filler}]}).encode()
    r = post_raw(http, body)
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "param", "code"}


def test_unknown_path(http):
    r = http.get("/v1/nothing-here")
    assert_openai_error(r, 404)


def test_wrong_method(http):
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405
    assert "error" in r.json()


def test_still_serving_after_errors(http, model):
    # Runs last in this module (pytest keeps file order): the bad inputs above must not have hurt the server.
    r = http.post(
        "/v1/chat/completions",
        json={"model": model, "messages": MSG, "max_tokens": 4, "temperature": 0},
        timeout=httpx.Timeout(60),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert http.get("/ready", timeout=10).status_code == 200
