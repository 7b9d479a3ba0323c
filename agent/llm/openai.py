"""Any OpenAI-compatible chat server over httpx: vLLM, Ollama, llama.cpp server, LM Studio, OpenAI.

``POST {base_url}/chat/completions``, whole answers or Server-Sent Events streams. Failures become the
error classes of :mod:`.base`, each naming the server and the model: 401/403 ``LLMAuthError``, 404
``LLMNotFound``, 429 ``LLMRateLimited``, 5xx ``LLMServerError``, an unreachable host ``LLMUnavailable``,
no answer in time ``LLMTimeout``, a body that is not the protocol ``LLMError``. 429, 5xx and refused
connections are retried with exponential backoff (a ``Retry-After`` header wins when it is given).

Constraints: a GBNF ``grammar`` goes in the llama.cpp server's extra body field ``grammar``; a
``json_schema`` becomes ``response_format: {"type": "json_schema", ...}``. Images of a message become
``image_url`` parts (local files as base64 ``data:`` URLs) when the model is marked ``vision=True``.
"""

from __future__ import annotations

import base64
import email.utils
import json
import mimetypes
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vistrace.errors import InputError

from .base import (
    Completion,
    LLMAuthError,
    LLMError,
    LLMNotFound,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
    LLMUnavailable,
    Message,
)

API_KEY_ENVS = ("VISTRACE_LLM_API_KEY", "OPENAI_API_KEY")
START_HINT = ("start one, e.g. `python -m llama_cpp.server --model "
              "~/.cache/vistrace/models/gguf/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf --host 127.0.0.1 --port 8080` "
              "or `ollama serve`, or use the in-process model with --llm local")
# hosted APIs known to refuse unknown body fields such as llama.cpp's "grammar"
_NO_GRAMMAR_HOSTS = ("api.openai.com", "openai.azure.com", "api.anthropic.com", "generativelanguage.googleapis.com")
MAX_RESPONSE_BYTES = 4 * 1024 * 1024   # a chat completion body (or one stream event) larger than this is refused


def _read_capped(response, limit: int) -> bytes:
    """The response body, read no further than ``limit`` bytes (a larger one is a ReplyTooLong)."""
    from ..extract import ReplyTooLong

    got = bytearray()
    for chunk in response.iter_bytes():
        got += chunk
        if len(got) > limit:
            raise ReplyTooLong(limit, limit, unit="bytes", setting="max_response_bytes", more=True)
    return bytes(got)


def _sse_lines(response, limit: int) -> Iterator[str]:
    """The lines of an event stream; a line longer than ``limit`` bytes is a ReplyTooLong (read no further)."""
    from ..extract import ReplyTooLong

    buf = bytearray()
    for chunk in response.iter_bytes():
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            yield buf[start:nl].decode("utf-8", errors="replace").rstrip("\r")
            start = nl + 1
        del buf[:start]
        if len(buf) > limit:
            raise ReplyTooLong(limit, limit, unit="bytes", setting="max_response_bytes", more=True)
    if buf:
        yield buf.decode("utf-8", errors="replace").rstrip("\r")


def retry_delay(attempt: int, retry_after: str | None, *, backoff: float = 0.5, max_wait: float = 30.0) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): the server's ``Retry-After`` (seconds or an
    HTTP date) when given, else ``backoff * 2**attempt``; never more than ``max_wait``."""
    if retry_after:
        value = retry_after.strip()
        try:
            return max(0.0, min(float(value), max_wait))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, min(when.timestamp() - time.time(), max_wait))
    return min(backoff * (2 ** attempt), max_wait)


def image_url(image: str) -> str:
    """An image reference as a URL a server accepts: ``http(s):``/``data:`` as given, a local file as base64."""
    if image.startswith(("data:", "http://", "https://")):
        return image
    path = Path(image).expanduser()
    if not path.is_file():
        raise InputError(f"image {image} is not a file (give a local path, an http(s) URL or a data: URL)")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _server_message(body: bytes) -> str:
    """The error text a server put in its body (OpenAI ``{"error": {"message"}}``, FastAPI ``detail``, or text)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return str(err)[:300]
    return text[:300]


class OpenAICompatible:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    ``api_key``: when None, ``$VISTRACE_LLM_API_KEY`` or ``$OPENAI_API_KEY`` (no key: no header).
    ``retries``: how many times a 429/5xx/refused connection is tried again. ``vision``: the model
    takes images. ``grammar``: whether to send llama.cpp's ``grammar`` field (default: yes, except for
    hosted APIs known to refuse it).
    """

    supports_json_schema = True

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 60, retries: int = 3,
                 *, vision: bool = False, grammar: bool | None = None, backoff: float = 0.5, max_wait: float = 30.0,
                 max_response_bytes: int = MAX_RESPONSE_BYTES):
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"OpenAI-compatible base URL must start with http:// or https://, got '{base_url}'",
                             hint="e.g. http://127.0.0.1:8080/v1")
        if not model:
            raise InputError("OpenAI-compatible client needs a model name", hint="e.g. openai:http://127.0.0.1:8080/v1#qwen")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key if api_key is not None else next(
            (os.environ[e] for e in API_KEY_ENVS if os.environ.get(e)), None)
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.max_wait = max_wait
        self.max_response_bytes = int(max_response_bytes)
        self.supports_images = bool(vision)
        self.supports_grammar = (not any(h in self.base_url for h in _NO_GRAMMAR_HOSTS)) if grammar is None \
            else bool(grammar)
        self.name = f"openai:{self.base_url}#{model}"
        self.attempts = 0   # HTTP requests sent by the last call (1 + retries used), for traces and tests
        self._client = None
        self._json_object_style = False   # the server wants response_format {"type": "json_object", "schema"}

    # --- plumbing -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def _http(self):
        if self._client is None:
            import httpx

            headers = {"Accept": "application/json"}
            if self.api_key:
                headers["Authorization"] = f"Bearer {self.api_key}"
            self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(self.timeout,
                                                                               connect=min(10.0, self.timeout)))
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> OpenAICompatible:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAICompatible({self.base_url!r}, {self.model!r})"

    def _messages(self, messages: list[Message]) -> list[dict[str, Any]]:
        out = []
        for m in messages:
            if m.images and self.supports_images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}]
                parts += [{"type": "image_url", "image_url": {"url": image_url(i)}} for i in m.images]
                out.append({"role": m.role, "content": parts})
            else:
                out.append({"role": m.role, "content": m.content})
        return out

    def _body(self, messages, *, grammar, json_schema, max_tokens, temperature, stop, stream) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self._messages(messages), "max_tokens": max_tokens,
                                "temperature": temperature, "stream": stream}
        if stop:
            body["stop"] = list(stop)
        if grammar:
            body["grammar"] = grammar
        if json_schema:
            spec = json_schema if "schema" in json_schema and "name" in json_schema else \
                {"name": "answer", "schema": json_schema, "strict": True}
            body["response_format"] = {"type": "json_object", "schema": spec["schema"]} if self._json_object_style \
                else {"type": "json_schema", "json_schema": spec}
        return body

    def _post(self, body: dict[str, Any]):
        """``_send``, and once more in the ``{"type": "json_object", "schema": ...}`` dialect (llama-cpp-python's
        server) when a server rejects ``response_format`` of type json_schema; the dialect is remembered."""
        try:
            return self._send(body)
        except LLMError as exc:
            fmt = body.get("response_format") or {}
            mentioned = "json_schema" in str(exc) or "response_format" in str(exc)
            if fmt.get("type") != "json_schema" or getattr(exc, "status", None) not in (400, 422, 500) or not mentioned:
                raise
            self._json_object_style = True
            retry = dict(body, response_format={"type": "json_object", "schema": fmt["json_schema"]["schema"]})
            return self._send(retry)

    def _status_error(self, code: int, body: bytes) -> LLMError:
        error = self._status_error_for(code, body)
        error.status = code   # the HTTP status, for callers that branch on it
        return error

    def _status_error_for(self, code: int, body: bytes) -> LLMError:
        detail = _server_message(body)
        where = f"{self.url} (model '{self.model}')"
        if code in (401, 403):
            return LLMAuthError(f"{where} refused the credentials (HTTP {code}): {detail}",
                                hint="set VISTRACE_LLM_API_KEY (or OPENAI_API_KEY) to a key this server accepts")
        if code == 404:
            known = self._known_models()
            return LLMNotFound(f"model '{self.model}' or endpoint {self.url} not found (HTTP 404): {detail}",
                               hint=(f"models this server offers: {', '.join(known)}" if known else
                                     f"check the model name and that the base URL ends where /chat/completions "
                                     f"is served (often .../v1); GET {self.base_url}/models lists the models"))
        if code == 429:
            return LLMRateLimited(f"{where} is rate limiting (HTTP 429) and {self.retries} retries ran out: {detail}",
                                  hint="wait and try again, lower the request rate, or use another server")
        if code >= 500:
            return LLMServerError(f"{where} failed (HTTP {code}) and {self.retries} retries ran out: {detail}",
                                  hint="look at the server's log")
        return LLMError(f"{where} rejected the request (HTTP {code}): {detail}")

    def _known_models(self) -> list[str]:
        """Model ids from ``GET /models`` (for a 404's hint); empty when the server does not say."""
        try:
            r = self._http().get(f"{self.base_url}/models", timeout=min(5.0, self.timeout))
            data = r.json().get("data", []) if r.status_code == 200 else []
            return [str(d["id"]) for d in data if isinstance(d, dict) and "id" in d][:20]
        except Exception:  # noqa: BLE001 - only a hint; any failure means "no list"
            return []

    def _unreachable(self, exc: Exception) -> LLMUnavailable:
        return LLMUnavailable(f"cannot reach the LLM server at {self.url} ({type(exc).__name__}: {exc}) "
                              f"after {self.attempts} attempts", hint=f"is a server running there? {START_HINT}")

    def _timeout(self, exc: Exception) -> LLMTimeout:
        return LLMTimeout(f"{self.url} (model '{self.model}') did not answer within {self.timeout:g} s "
                          f"({type(exc).__name__})", hint="raise the timeout, lower max_tokens, or use a faster model")

    def _send(self, body: dict[str, Any]):
        """POST with retries; returns an open httpx response with status 200 (the caller closes it)."""
        import httpx

        client = self._http()
        self.attempts = 0
        for attempt in range(self.retries + 1):
            self.attempts += 1
            try:
                request = client.build_request("POST", self.url, json=body)
                response = client.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and attempt < self.retries:
                    time.sleep(retry_delay(attempt, None, backoff=self.backoff, max_wait=self.max_wait))
                    continue
                raise (self._unreachable(exc) if isinstance(exc, httpx.ConnectTimeout) else self._timeout(exc)) from exc
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                if attempt < self.retries:
                    time.sleep(retry_delay(attempt, None, backoff=self.backoff, max_wait=self.max_wait))
                    continue
                raise self._unreachable(exc) from exc
            except httpx.HTTPError as exc:
                raise LLMError(f"request to {self.url} failed: {type(exc).__name__}: {exc}") from exc
            if response.status_code == 200:
                return response
            try:
                content = response.read()
            except httpx.HTTPError:
                content = b""
            finally:
                response.close()
            code = response.status_code
            # llama-cpp-python's server answers a request it cannot validate with a 500: not worth a retry
            deterministic = b"validation error" in content[:2000]
            if (code == 429 or code >= 500) and attempt < self.retries and not deterministic:
                time.sleep(retry_delay(attempt, response.headers.get("retry-after"), backoff=self.backoff,
                                       max_wait=self.max_wait))
                continue
            raise self._status_error(code, content)
        raise AssertionError("unreachable")  # the loop always returns or raises

    # --- the protocol ---------------------------------------------------------------------------

    def complete(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
                 max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None) -> Completion:
        import httpx

        body = self._body(messages, grammar=grammar, json_schema=json_schema, max_tokens=max_tokens,
                          temperature=temperature, stop=stop, stream=False)
        response = self._post(body)
        try:
            raw = _read_capped(response, self.max_response_bytes)
        except httpx.TimeoutException as exc:
            raise self._timeout(exc) from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"reading the answer of {self.url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()
        try:
            data = json.loads(raw)
            choice = data["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
            if not isinstance(text, str):
                raise TypeError(f"message content is {type(text).__name__}")
            usage = {k: int(v) for k, v in (data.get("usage") or {}).items() if isinstance(v, (int, float))}
            return Completion(text=text, finish_reason=str(choice.get("finish_reason") or "stop"),
                              model=str(data.get("model") or self.model), usage=usage)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMError(f"{self.url} answered with a body that is not an OpenAI chat completion "
                           f"({type(exc).__name__}: {exc}): {raw[:200].decode('utf-8', errors='replace')!r}",
                           hint="is the base URL an OpenAI-compatible API (often ending in /v1)?") from exc

    def stream(self, messages: list[Message], *, grammar: str | None = None, json_schema: dict | None = None,
               max_tokens: int = 512, temperature: float = 0.0, stop: list[str] | None = None) -> Iterator[str]:
        import httpx

        body = self._body(messages, grammar=grammar, json_schema=json_schema, max_tokens=max_tokens,
                          temperature=temperature, stop=stop, stream=True)
        response = self._post(body)
        try:
            for line in _sse_lines(response, self.max_response_bytes):
                line = line.strip()
                if not line.startswith("data:"):
                    continue  # blank separators, ": comments", "event:" lines
                payload = line[5:].strip()
                if payload == "[DONE]":
                    return
                try:
                    data = json.loads(payload)
                except ValueError as exc:
                    raise LLMError(f"{self.url} sent a stream event that is not JSON: {payload[:200]!r}") from exc
                if not isinstance(data, dict):
                    raise LLMError(f"{self.url} sent a stream event that is not an object: {payload[:200]!r}")
                if "error" in data:
                    raise LLMServerError(f"{self.url} (model '{self.model}') failed mid-stream: "
                                         f"{_server_message(payload.encode())}")
                try:
                    piece = (data["choices"][0].get("delta") or {}).get("content") if data.get("choices") else None
                except (KeyError, IndexError, TypeError, AttributeError) as exc:
                    raise LLMError(f"{self.url} sent a malformed stream event: {payload[:200]!r}") from exc
                if isinstance(piece, str) and piece:
                    yield piece
        except httpx.TimeoutException as exc:
            raise self._timeout(exc) from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"the stream from {self.url} broke: {type(exc).__name__}: {exc}") from exc
        finally:
            response.close()
