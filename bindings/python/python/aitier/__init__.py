"""The aitier tier inside this Python process.

The same models, keys, limits, scheduler and usage ledger as a separate
aitier service, from the same configuration file, called without a network
hop and with the OpenAI SDK's shape::

    import aitier

    tier = aitier.Tier("aitier.toml")          # or aitier.Tier() for the defaults
    answer = tier.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    print(answer.choices[0].message.content)

    for chunk in tier.chat.completions.create(model=..., messages=..., stream=True):
        print(chunk.choices[0].delta.content or "", end="")

Answers are plain objects: dicts whose keys also read as attributes (no
pydantic). Errors are ``aitier.APIError`` subclasses named as the OpenAI
SDK names them (``BadRequestError``, ``RateLimitError``, ...), with
``status_code``, ``code``, ``param`` and the error ``body``. Calls release
the GIL while the tier works, so other threads run Python meanwhile.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional

from ._native import NativeTier, TierError

__all__ = [
    "Tier",
    "Object",
    "Stream",
    "APIError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
]


class Object(dict):
    """A JSON object whose keys read as attributes too: ``a.b`` is
    ``a["b"]``, and a field the answer left out reads as ``None``, as it
    does on the OpenAI SDK's models (``delta.content`` of a role chunk)."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)

    def model_dump(self) -> dict:
        """The plain data, as the OpenAI SDK's models give it."""
        return json.loads(json.dumps(self))

    def to_dict(self) -> dict:
        return self.model_dump()


class Page(Object):
    """A list answer (``models.list()``): iterates over its ``data``."""

    def __iter__(self):  # type: ignore[override]
        return iter(self["data"])


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Object((k, _wrap(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _load(text: str, cls=Object) -> Any:
    return cls(_wrap(json.loads(text)))


class APIError(Exception):
    """A refusal or failure of the tier, with its OpenAI error body."""

    status_code: Optional[int]

    def __init__(self, status_code: Optional[int], body: dict):
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status_code = status_code
        self.body = error
        self.message = error.get("message", "")
        self.code = error.get("code")
        self.param = error.get("param")
        self.type = error.get("type")
        prefix = f"Error code: {status_code} - " if status_code else ""
        super().__init__(f"{prefix}{self.message}")


class APIStatusError(APIError):
    """A refusal with an HTTP status (every refusal before a stream starts)."""


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


_BY_STATUS = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _error(e: TierError) -> APIError:
    status, body = e.args
    body = json.loads(body) if body else {}
    if status is None:
        return APIError(None, body)
    if status >= 500:
        return InternalServerError(status, body)
    return _BY_STATUS.get(status, APIStatusError)(status, body)


def _call(fn, *args):
    try:
        return fn(*args)
    except TierError as e:
        raise _error(e) from None


class Stream:
    """A generation's chunks as they come; close it (or leave a ``with``
    block) to stop the generation early."""

    def __init__(self, native):
        self._native = native

    def __iter__(self) -> Iterator[Object]:
        return self

    def __next__(self) -> Object:
        text = _call(self._native.__next__)
        if text is None:
            raise StopIteration
        return _load(text)

    def close(self) -> None:
        self._native.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _body(kwargs: dict) -> str:
    """The request's JSON: the SDK's keyword arguments, unset ones left
    out, ``extra_body`` merged in as the SDK merges it."""
    extra = kwargs.pop("extra_body", None) or {}
    for ignored in ("extra_headers", "extra_query", "timeout"):
        kwargs.pop(ignored, None)
    body = {k: v for k, v in kwargs.items() if v is not None}
    body.update(extra)
    return json.dumps(body)


class _Generation:
    def __init__(self, client, whole: str, streamed: str):
        self._whole = getattr(client, whole)
        self._streamed = getattr(client, streamed)

    def create(self, **kwargs: Any):
        stream = bool(kwargs.pop("stream", False))
        body = _body(kwargs)
        if stream:
            return Stream(_call(self._streamed, body))
        return _load(_call(self._whole, body))


class _Chat:
    def __init__(self, client):
        self.completions = _Generation(client, "chat", "chat_stream")


class _Embeddings:
    def __init__(self, client):
        self._client = client

    def create(self, **kwargs: Any) -> Object:
        return _load(_call(self._client.embed, _body(kwargs)))


class _Models:
    def __init__(self, client):
        self._client = client

    def list(self) -> Page:
        return _load(_call(self._client.models), Page)

    def retrieve(self, model: str) -> Object:
        for m in self.list():
            if m.id == model:
                return m
        raise NotFoundError(
            404,
            {
                "error": {
                    "message": f"The model `{model}` does not exist.",
                    "type": "invalid_request_error",
                    "param": "model",
                    "code": "model_not_found",
                }
            },
        )


class Tier:
    """The tier of one configuration file (``aitier serve --config``'s;
    none: the embedded default models), loaded in this process. Calls are
    checked against ``api_key`` as an HTTP request with that key would be.
    """

    def __init__(
        self,
        config: Optional[str] = None,
        *,
        api_key: Optional[str] = None,
        ready_timeout: float = 600.0,
        _native: Optional[NativeTier] = None,
    ):
        self._native = _native or NativeTier(
            None if config is None else str(config), ready_timeout
        )
        client = self._native.client(api_key)
        self.chat = _Chat(client)
        self.completions = _Generation(client, "complete", "complete_stream")
        self.embeddings = _Embeddings(client)
        self.models = _Models(client)

    def with_api_key(self, api_key: Optional[str]) -> "Tier":
        """The same loaded tier, called under another key."""
        return Tier(api_key=api_key, _native=self._native)

    def close(self) -> None:
        """Writes every usage row still queued; for an app about to exit."""
        self._native.close()

    def __enter__(self) -> "Tier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
