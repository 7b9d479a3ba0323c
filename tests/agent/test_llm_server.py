"""Given the real 0.5B model served by ``python -m llama_cpp.server`` on 127.0.0.1 (started and stopped by
the module fixture), when the OpenAICompatible client talks to it, then it completes, streams, and the
server honours the ``grammar`` field and a JSON schema.

Slow: the server loads the model once for the module (n_ctx 2048, 2 threads).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from vistrace.agent.llm import LLMNotFound, Message, OpenAICompatible, make_llm
from vistrace.tools import models

pytestmark = pytest.mark.slow

YES_NO = 'root ::= "yes" | "no"'
START_LIMIT_S = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'vistrace[agent]')")
    for mod in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        pytest.importorskip(mod, reason=f"the llama.cpp server needs {mod} (pip install 'llama-cpp-python[server]' deps)")
    ok, why = models.status("qwen-0.5b")
    if not ok:
        pytest.skip(f"the 0.5B model is not here: {why} (vistrace models fetch qwen-0.5b)")
    import httpx

    port = _free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(models.QWEN_05B.path()), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "2048", "--n_threads", "2", "--model_alias", "qwen-0.5b"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_LIMIT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer within {START_LIMIT_S} s: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def llm(server) -> OpenAICompatible:
    client = make_llm(f"openai:{server}#qwen-0.5b", timeout=60, retries=1)
    yield client
    client.close()


def ask(text: str) -> list[Message]:
    return [Message("system", "You are a concise assistant."), Message("user", text)]


def test_complete_over_http(llm):
    """Given the served model, when complete() asks an arithmetic question, then the answer holds the number."""
    out = llm.complete(ask("What is 2 + 3? Reply with only the number."), max_tokens=8)
    assert "5" in out.text and out.usage.get("completion_tokens", 0) >= 1 and llm.attempts == 1


def test_stream_over_sse_joins_to_the_complete_answer(llm):
    """Given the served model, when the same prompt is streamed at temperature 0, then several SSE pieces
    arrive and join to what complete() answers."""
    messages = ask("Name three colours, comma separated.")
    pieces = list(llm.stream(messages, max_tokens=16))
    assert len(pieces) > 1
    assert "".join(pieces) == llm.complete(messages, max_tokens=16).text


def test_the_server_honours_the_grammar_field(llm):
    """Given a yes/no grammar in the body, when a question inviting prose is asked, then the answer is
    exactly yes or no, streamed or not."""
    messages = ask("Write a poem about the sea.")
    assert llm.complete(messages, grammar=YES_NO, max_tokens=8).text in ("yes", "no")
    assert "".join(llm.stream(messages, grammar=YES_NO, max_tokens=8)) in ("yes", "no")


def test_a_json_schema_reaches_the_server_in_a_form_it_takes(llm):
    """Given a JSON schema, when completed against llama-cpp-python's server (which takes only the
    json_object form), then the answer parses and has the schema's keys and types."""
    schema = {"type": "object", "properties": {"is_red": {"type": "boolean"}, "wheels": {"type": "integer"}},
              "required": ["is_red", "wheels"]}
    data = json.loads(llm.complete(ask("A red bicycle. Describe it as JSON."), json_schema=schema, max_tokens=40).text)
    assert isinstance(data["is_red"], bool) and isinstance(data["wheels"], int)


def test_a_wrong_base_path_on_the_real_server_is_not_found(server):
    """Given the real server and a base URL missing /v1, when complete() is called, then LLMNotFound names it."""
    base = server.removesuffix("/v1")
    with pytest.raises(LLMNotFound, match="/chat/completions"):
        OpenAICompatible(base, "qwen-0.5b", retries=0).complete(ask("hi"), max_tokens=2)
