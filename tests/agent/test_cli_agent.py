"""`vistrace ask`, `vistrace chat` (stdin piped into a subprocess) and `vistrace sessions`.

The model is the scripted OpenAI-compatible test-double server on 127.0.0.1 (started and stopped
here), reached through the real OpenAICompatible client; the tools and the image are real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.agent.scripted_server import ScriptedServer
from vistrace.cli import app

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples" / "images" / "chelsea.jpg"
GOOD = "b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.width\n"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("VISTRACE_HOME", str(h))
    monkeypatch.chdir(tmp_path)
    return h


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_ask_prints_answer_program_citations_and_report(home, tmp_path):
    """Given a model whose first program is rejected and whose second works,
    when `vistrace ask IMAGE "question" --out DIR` runs,
    then it exits 0 and prints the answer, the steps it rests on, the program and the run folder,
    which holds the report."""
    with ScriptedServer(["result = nope(image)", GOOD]) as srv:
        res = invoke("ask", IMAGE, "How wide is the corner?", "--llm", srv.spec, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "answer: 50" in out and "rests on step 1 (line 1, box)" in out and "rests on step 2 (line 2, crop)" in out
    assert "b = box(0, 0, 50, 40)" in out and "attempts: 2 (1 repaired)" in out
    assert f"run folder: {tmp_path / 'run'} (report.html)" in out
    assert (tmp_path / "run" / "report.html").is_file() and (tmp_path / "run" / "program.vp").read_text() == GOOD
    assert "grammar" in srv.requests[0] and "unknown tool 'nope'" in srv.requests[1]["messages"][-1]["content"]


def test_ask_json_and_no_grammar(home, tmp_path):
    """Given --json and --no-grammar, when asked, then the JSON has the value, program and cited steps,
    and the request carried no grammar."""
    with ScriptedServer([GOOD]) as srv:
        res = invoke("ask", f"image={IMAGE}", "How wide?", "--llm", srv.spec, "--no-grammar", "--json",
                     "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["ok"] and payload["value"] == 50 and payload["cited_steps"] == [1, 2]
    assert payload["program"] == GOOD and "grammar" not in srv.requests[0]


@pytest.mark.parametrize("replies, code, message", [
    (["result = nope(image)"] * 2, 2, "program was rejected by check"),
    (["b = box(9, 9, 1, 1)\nresult = crop(image, b)"] * 2, 1, "program failed while running"),
    (["no program here, sorry"] * 2, 2, "answer held no program"),
])
def test_ask_failures_exit_like_run(home, tmp_path, replies, code, message):
    """Given a model that never succeeds, when asked with --max-repairs 1,
    then the exit code is 2 for rejected (or no) programs and 1 for runtime failures, every attempt
    is listed, and a failed run's folder is still written."""
    with ScriptedServer(replies) as srv:
        res = invoke("ask", IMAGE, "What?", "--llm", srv.spec, "--max-repairs", "1", "--out", tmp_path / "r")
    assert res.exit_code == code, res.output
    assert message in res.output and "attempt 1" in res.output and "attempt 2" in res.output
    assert (tmp_path / "r" / "trace.json").is_file() == (code == 1)


@pytest.mark.parametrize("args, message", [
    (["missing.jpg", "What?"], "image file not found: missing.jpg"),
    ([IMAGE], "the last argument must be the question"),
    ([IMAGE, "What?", "--llm", "nonsense"], "LLM spec 'nonsense' is not valid"),
])
def test_ask_bad_inputs_exit_2(home, args, message):
    """Given a missing image or a bad --llm spec, when asked, then exit 2 with the reason."""
    res = invoke("ask", *args)
    assert res.exit_code == 2 and message in res.output


def test_ask_unreachable_server_exits_1(home):
    """Given a server that is not there, when asked, then exit 1 naming the unreachable model."""
    res = invoke("ask", IMAGE, "What?", "--llm", "openai:http://127.0.0.1:9/v1#none")
    assert res.exit_code == 1 and "the model could not be used" in res.output


def test_piped_chat_with_slash_commands(home, tmp_path):
    """Given a piped `vistrace chat --session NAME --image PATH`, when questions and slash commands
    come on stdin, then plan tokens and step events stream, /program /trace /save /images work,
    an unknown command is explained, and `vistrace sessions` lists the session."""
    env = {**os.environ, "VISTRACE_HOME": str(home)}
    lines = ["How wide is the corner?", "/program", "/trace", f"/save {tmp_path / 'saved'}", f"/image other={IMAGE}",
             "/images", "/bogus", "/exit", "never read"]
    with ScriptedServer([GOOD]) as srv:
        res = subprocess.run([sys.executable, "-m", "vistrace.cli", "chat", "--session", "desk", "--image", str(IMAGE),
                              "--llm", srv.spec], input="\n".join(lines) + "\n", capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "session desk (0 earlier turns)" in out
    assert "planning (attempt 1, grammar" in out
    assert "step 1 line 1 box [builtin] -> [0,0,50,40]" in out and "step 2 line 2 crop [builtin]" in out
    assert "answer: 50" in out and "rests on step 2 (line 2, crop)" in out
    assert out.count("c = crop(image, b)") >= 2                    # streamed tokens, then /program
    assert "saved: " in out and (tmp_path / "saved" / "report.html").is_file()
    assert "added other = " in out and "other: " in out
    assert "unknown command /bogus" in out and "never read" not in out
    listed = invoke("sessions")
    assert listed.exit_code == 0 and "desk" in listed.output and "How wide is the corner?" in listed.output


def test_chat_ends_at_end_of_input_and_sessions_when_empty(home):
    """Given no sessions, when listed, then it says so; given empty stdin, when chatting, then it ends cleanly."""
    assert "no sessions yet" in invoke("sessions").output
    res = CliRunner().invoke(app, ["chat", "--session", "quiet", "--llm", "openai:http://127.0.0.1:9/v1#none"],
                             input="")
    assert res.exit_code == 0 and "session quiet" in res.output
