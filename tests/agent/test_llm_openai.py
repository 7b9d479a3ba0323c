"""Given a real HTTP server on 127.0.0.1 speaking (and breaking) the OpenAI chat protocol, when the
OpenAICompatible client talks to it, then answers, streams, retries and every failure class come out
as specified.

The server is a small ``http.server`` in a thread, started and stopped by the module fixture. What it
does is chosen by the request's ``model`` field (``ok``, ``auth``, ``flaky``, ``boom``, ``garbage``, ...).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from vistrace.agent.llm import Message, OpenAICompatible
from vistrace.agent.llm.base import (
    LLMAuthError,
    LLMError,
    LLMNotFound,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
    LLMUnavailable,
)
from vistrace.agent.llm.openai import image_url, retry_delay

from vistrace.errors import InputError

HELLO = [Message("user", "say hello")]


def _completion(text: str, model: str) -> dict:
    return {"id": "x", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def _chunk(text: str) -> str:
    return "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": text}}]}) + "\n\n"


class ProtocolServer(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions according to the requested model; records every request body."""

    requests: list[dict] = []
    counts: dict[str, int] = {}

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json", headers: dict | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (the timeout test): nothing to answer

    def _json(self, code: int, data: dict, headers: dict | None = None) -> None:
        self._send(code, json.dumps(data).encode(), headers=headers)

    def do_GET(self) -> None:
        if self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": "ok"}, {"id": "stream"}]})
        else:
            self._json(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body["_auth"] = self.headers.get("Authorization")
        ProtocolServer.requests.append(body)
        model = body["model"]
        n = ProtocolServer.counts[model] = ProtocolServer.counts.get(model, 0) + 1
        if self.path != "/v1/chat/completions":
            self._json(404, {"detail": "Not Found"})
        elif model == "ok":
            self._json(200, _completion("hello there", model))
        elif model == "auth":
            self._json(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
        elif model == "forbidden":
            self._json(403, {"error": {"message": "no access"}})
        elif model == "missing":
            self._json(404, {"error": {"message": "model 'missing' not found"}})
        elif model == "flaky":      # two 429s (Retry-After: 0), then an answer
            if n <= 2:
                self._json(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
            else:
                self._json(200, _completion("finally", model))
        elif model == "limited":
            self._json(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"})
        elif model == "boom":
            self._json(500, {"error": {"message": "kaboom"}})
        elif model == "invalid-500":   # llama-cpp-python's server reports request validation as a 500
            self._json(500, {"error": {"message": "1 validation error: field required"}})
        elif model == "bad-request":
            self._json(400, {"error": {"message": "grammar field not supported"}})
        elif model == "json-object-dialect":   # like llama-cpp-python's server: only "text" / "json_object"
            if (body.get("response_format") or {}).get("type") not in (None, "text", "json_object"):
                if body.get("max_tokens") == 99:   # the way llama-cpp-python's server really says it
                    self._json(500, {"error": {"message": "1 validation error: ('body', 'response_format', 'type') "
                                                          "Input should be 'text' or 'json_object'"}})
                else:
                    self._json(422, {"detail": [{"loc": ["body", "response_format", "type"],
                                                 "msg": "Input should be 'text' or 'json_object'"}]})
            else:
                self._json(200, _completion('{"answer": "yes"}', model))
        elif model == "garbage":
            self._send(200, b"<html>definitely not json</html>", "text/html")
        elif model == "no-choices":
            self._json(200, {"id": "x", "object": "chat.completion"})
        elif model == "slow":
            time.sleep(1.5)
            self._json(200, _completion("late", model))
        elif model == "stream":
            events = "".join(_chunk(p) for p in ["Hel", "lo", ", ", "world"])
            events = ": keep-alive comment\n\n" + events + "data: [DONE]\n\n" + _chunk("after done")
            self._send(200, events.encode(), "text/event-stream")
        elif model == "stream-garbage":
            self._send(200, (_chunk("ok") + "data: {not json\n\n").encode(), "text/event-stream")
        elif model == "stream-error":
            self._send(200, (_chunk("partial") + 'data: {"error": {"message": "ran out of memory"}}\n\n').encode(),
                       "text/event-stream")
        else:
            self._json(404, {"error": {"message": f"unknown model {model}"}})


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ProtocolServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_log():
    ProtocolServer.requests.clear()
    ProtocolServer.counts.clear()


def client(url: str, model: str, **kw) -> OpenAICompatible:
    kw.setdefault("backoff", 0.01)
    kw.setdefault("api_key", "sk-test")
    return OpenAICompatible(url, model, **kw)


def test_complete_returns_text_usage_and_sends_the_openai_body(server):
    """Given a server that answers, when complete() is called, then the text, finish reason and usage come
    back, and the request carried model, messages, max_tokens, temperature, stop and the bearer key."""
    llm = client(server, "ok")
    out = llm.complete(HELLO, max_tokens=7, temperature=0.0, stop=["\n\n"])
    assert out.text == "hello there" and out.finish_reason == "stop" and out.model == "ok"
    assert out.usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    sent = ProtocolServer.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": "say hello"}]
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["stream"]) == (7, 0.0, ["\n\n"], False)
    assert sent["_auth"] == "Bearer sk-test"
    assert "grammar" not in sent and "response_format" not in sent
    assert llm.name == f"openai:{server}#ok" and llm.attempts == 1


def test_grammar_and_json_schema_go_in_the_body(server):
    """Given a grammar and a JSON schema, when complete() is called, then the body carries llama.cpp's
    ``grammar`` field and an OpenAI ``response_format`` of type json_schema."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    client(server, "ok").complete(HELLO, grammar='root ::= "yes" | "no"', json_schema=schema)
    sent = ProtocolServer.requests[-1]
    assert sent["grammar"] == 'root ::= "yes" | "no"'
    assert sent["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def test_a_server_that_only_knows_json_object_gets_the_schema_in_that_form(server):
    """Given a server that rejects response_format type json_schema (422) but takes json_object + schema,
    when a schema is asked for, then the client retries once in that form and keeps using it."""
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    llm = client(server, "json-object-dialect")
    assert llm.complete(HELLO, json_schema=schema).text == '{"answer": "yes"}'
    assert [r["response_format"]["type"] for r in ProtocolServer.requests] == ["json_schema", "json_object"]
    assert ProtocolServer.requests[-1]["response_format"]["schema"] == schema
    llm.complete(HELLO, json_schema=schema)
    assert ProtocolServer.counts["json-object-dialect"] == 3
    fresh = client(server, "json-object-dialect")   # the same through a 500 "validation error": no retries
    assert fresh.complete(HELLO, json_schema=schema, max_tokens=99).text == '{"answer": "yes"}'
    assert ProtocolServer.counts["json-object-dialect"] == 5


def test_api_key_comes_from_the_environment_when_not_given(server, monkeypatch):
    """Given $VISTRACE_LLM_API_KEY, when no key is passed, then it is sent; without any key no header is sent."""
    monkeypatch.setenv("VISTRACE_LLM_API_KEY", "sk-env")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    OpenAICompatible(server, "ok").complete(HELLO)
    assert ProtocolServer.requests[-1]["_auth"] == "Bearer sk-env"
    monkeypatch.delenv("VISTRACE_LLM_API_KEY")
    OpenAICompatible(server, "ok").complete(HELLO)
    assert ProtocolServer.requests[-1]["_auth"] is None


def test_stream_yields_the_pieces_in_order_and_stops_at_done(server):
    """Given an SSE stream with a comment line and four deltas, when stream() is iterated, then exactly
    the four pieces come out, in order, and the request asked for a stream."""
    pieces = list(client(server, "stream").stream(HELLO))
    assert pieces == ["Hel", "lo", ", ", "world"]
    assert ProtocolServer.requests[-1]["stream"] is True


def test_429_is_retried_honouring_retry_after_then_succeeds(server):
    """Given a server that answers 429 twice before answering, when complete() is called with 3 retries,
    then it succeeds on the third request."""
    llm = client(server, "flaky", backoff=5.0)  # Retry-After: 0 wins over the 5 s backoff
    assert llm.complete(HELLO).text == "finally"
    assert ProtocolServer.counts["flaky"] == 3 and llm.attempts == 3


@pytest.mark.parametrize("model, error, retried, words", [
    ("auth", LLMAuthError, False, ["401", "invalid api key", "VISTRACE_LLM_API_KEY"]),
    ("forbidden", LLMAuthError, False, ["403", "no access"]),
    ("missing", LLMNotFound, False, ["'missing'", "/chat/completions", "404", "ok, stream"]),
    ("limited", LLMRateLimited, True, ["429", "slow down"]),
    ("boom", LLMServerError, True, ["500", "kaboom"]),
    ("invalid-500", LLMServerError, False, ["500", "validation error"]),
    ("bad-request", LLMError, False, ["400", "grammar field not supported"]),
    ("garbage", LLMError, False, ["not an OpenAI chat completion", "definitely not json"]),
    ("no-choices", LLMError, False, ["not an OpenAI chat completion"]),
])
def test_http_failures_become_their_error_classes(server, model, error, retried, words):
    """Given a server failing in one way, when complete() is called, then the matching LLMError subclass
    is raised, naming the server and what went wrong; only 429/5xx are retried (1 + 2 requests)."""
    llm = client(server, model, retries=2)
    with pytest.raises(error) as info:
        llm.complete(HELLO)
    text = str(info.value)
    assert type(info.value) is error
    for word in words:
        assert word in text
    assert ProtocolServer.counts[model] == (3 if retried else 1)


def test_wrong_base_url_path_is_not_found_naming_the_url(server):
    """Given a base URL without /v1, when complete() is called, then LLMNotFound names the URL it tried."""
    base = server.removesuffix("/v1")
    with pytest.raises(LLMNotFound) as info:
        client(base, "ok").complete(HELLO)
    assert f"{base}/chat/completions" in str(info.value)


@pytest.mark.parametrize("model, error, words", [
    ("stream-garbage", LLMError, ["not JSON", "{not json"]),
    ("stream-error", LLMServerError, ["mid-stream", "ran out of memory"]),
    ("boom", LLMServerError, ["500"]),
])
def test_broken_streams_raise_llm_errors_not_crashes(server, model, error, words):
    """Given a stream that breaks (bad event, error event, HTTP 500), when iterated, then an LLMError
    subclass is raised after the pieces that did arrive."""
    got = []
    with pytest.raises(error) as info:
        for piece in client(server, model, retries=1).stream(HELLO):
            got.append(piece)
    assert all(w in str(info.value) for w in words)
    assert got in ([], ["ok"], ["partial"])


def test_a_slow_server_is_a_timeout(server):
    """Given a server slower than the client's timeout, when complete() is called, then LLMTimeout says so."""
    with pytest.raises(LLMTimeout) as info:
        client(server, "slow", timeout=0.3).complete(HELLO)
    assert "did not answer within 0.3 s" in str(info.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_host_is_unavailable_naming_the_url_and_how_to_start_a_server():
    """Given nothing listening on a port, when complete() is called, then the connection is retried and
    LLMUnavailable names the URL and how to start a server."""
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    llm = client(url, "qwen", retries=2)
    with pytest.raises(LLMUnavailable) as info:
        llm.complete(HELLO)
    text = str(info.value)
    assert f"{url}/chat/completions" in text and "llama_cpp.server" in text and "--llm local" in text
    assert llm.attempts == 3
    with pytest.raises(LLMUnavailable):
        list(client(url, "qwen", retries=0).stream(HELLO))


def test_images_become_image_url_parts_only_for_vision_models(server, tmp_path):
    """Given a message with a local PNG, when sent to a vision model, then it is an image_url part with a
    base64 data URL; to a text-only model only the text is sent."""
    png = tmp_path / "dot.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake-but-bytes")
    msg = [Message("user", "what is this?", images=(str(png), "https://example.com/cat.jpg"))]
    client(server, "ok", vision=True).complete(msg)
    content = ProtocolServer.requests[-1]["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "what is this?"}
    assert content[1]["type"] == "image_url" and content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert content[2]["image_url"]["url"] == "https://example.com/cat.jpg"
    client(server, "ok").complete(msg)
    assert ProtocolServer.requests[-1]["messages"][0]["content"] == "what is this?"


def test_a_missing_image_file_is_an_input_error(tmp_path):
    """Given an image path that does not exist, when it is turned into a URL, then InputError names it."""
    with pytest.raises(InputError, match="nope.png"):
        image_url(str(tmp_path / "nope.png"))


@pytest.mark.parametrize("attempt, header, expected", [
    (0, None, 0.5), (1, None, 1.0), (3, None, 4.0), (10, None, 30.0),   # exponential, capped
    (0, "2", 2.0), (5, "0", 0.0), (0, "120", 30.0),                    # Retry-After seconds win, capped
    (1, "soon", 1.0),                                                  # unreadable header: backoff
])
def test_retry_delay_is_exponential_and_honours_retry_after(attempt, header, expected):
    """Given an attempt number and a Retry-After header, when the delay is computed, then it is the header's
    value when readable, else backoff * 2**attempt, never above the cap."""
    assert retry_delay(attempt, header, backoff=0.5, max_wait=30.0) == expected


def test_retry_after_as_an_http_date_is_understood():
    """Given Retry-After as an HTTP date 10 s ahead, when the delay is computed, then it is about 10 s."""
    import email.utils

    header = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 5.0 <= retry_delay(0, header) <= 10.0


@pytest.mark.parametrize("base_url, model", [("127.0.0.1:8080/v1", "m"), ("ftp://host/v1", "m"),
                                             ("http://127.0.0.1:8080/v1", "")])
def test_bad_constructor_arguments_are_input_errors(base_url, model):
    """Given a base URL without http(s):// or an empty model, when the client is made, then InputError."""
    with pytest.raises(InputError):
        OpenAICompatible(base_url, model)


def test_grammar_support_is_off_for_hosted_apis_that_refuse_it():
    """Given the OpenAI API as base URL, when the client is made, then it does not claim grammar support."""
    assert not OpenAICompatible("https://api.openai.com/v1", "gpt-4o-mini", api_key="k").supports_grammar
    assert OpenAICompatible("http://127.0.0.1:8080/v1", "qwen", api_key="k").supports_grammar
