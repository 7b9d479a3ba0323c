"""Hostile LLM output: given a planner that answers with anything at all — nothing, prose, fences of every
kind, other languages, cut-off programs, tools that do not exist (or exist in other frameworks), control
characters, megabytes of text — when the agent plans, checks and runs, then it never crashes: the outcome is
either a valid program (the one in the answer, or the repair's) or ``AgentFailed`` after a bounded number of
attempts, every attempt kept (in the exception and in the session).

The planner is the scripted test double (``tests/agent/scripted_llm.py``), so every case is deterministic;
the tools are the real built-ins on a real photo.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

import vistrace
from tests.agent.scripted_llm import ScriptedLLM
from tests.agent.scripted_server import ScriptedServer
from vistrace.agent.extract import MAX_REPLY_CHARS, NoProgram, ReplyTooLong, extract_program
from vistrace.agent.graph import KEPT_RAW_CHARS, PREVIOUS_CHARS
from vistrace.agent.llm.base import Completion, LLMError
from vistrace.agent.result import AgentAnswer, AgentFailed
from vistrace.errors import InputError, VistraceError
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples" / "images" / "chelsea.jpg"   # 451x300
GOOD = "b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.width\n"
BODY = "b = box(0, 0, 50, 40)\nresult = crop(image, b).width"   # the same answer (50) in two lines
PWNED = Path("/tmp/vistrace-pwned-by-llm-output")
SECONDS = 10.0   # any one turn here, hostile or not, on 2 cores


@pytest.fixture(scope="module")
def reg():
    r = Registry()
    register_builtin(r)
    return r


@pytest.fixture(autouse=True)
def no_pwned_file():
    PWNED.unlink(missing_ok=True)
    yield
    assert not PWNED.exists(), "a program the model wrote touched the file system"


def _agent(replies, reg, **kw):
    llm = ScriptedLLM(list(replies), **{k: kw.pop(k) for k in ("supports_grammar", "supports_json_schema",
                                                                 "supports_prefill") if k in kw})
    return vistrace.Agent(llm=llm, registry=reg, cache=False, **kw), llm


# hostile first answer -> what becomes of it: "answered" (the program in it is found and runs, one attempt)
# or the stage where it is refused (extract / check / run); the scripted repair (GOOD) then answers.
HOSTILE = {
    # nothing, or no program
    "empty": ("", "extract"),
    "whitespace and newlines only": (" \n\t\n\n ", "extract"),
    "prose only": ("The picture shows a cat on a bed; the crop in the corner is about fifty pixels wide.", "extract"),
    "prose that looks like calls": ("\n".join(f"Step {i} (look at the picture) and then" for i in range(500)),
                                    "extract"),
    "a def instead of statements": ("def width(image):\n    return image.width\n", "extract"),
    # fences
    "python fence": (f"```python\n{BODY}\n```", "answered"),
    "vp fence": (f"```vp\n{BODY}\n```", "answered"),
    "bare fence": (f"```\n{BODY}\n```", "answered"),
    "tilde fence": (f"~~~python\n{BODY}\n~~~", "answered"),
    "several fences, the last one complete": (f"```python\nx = 1\n```\nBetter:\n```python\n{BODY}\n```\n"
                                              "Run it:\n```bash\nvistrace run prog.vp\n```", "answered"),
    "unclosed fence": (f"Here:\n```python\n{BODY}\n", "answered"),
    "empty unclosed fence": ("```python\n", "extract"),
    "only a non-code fence": ("```text\nthe answer is 50\n```", "extract"),
    "a thousand fences": ("```python\nresult = (\n```\n" * 1000, "extract"),
    # mixed languages
    "chinese prose around a fence": (f"这是程序：\n```python\n{BODY}\n```\n希望这对你有帮助。", "answered"),
    "russian prose around bare code": (f"Вот программа:\n{BODY}\nГотово.", "answered"),
    "japanese comment in the code": (f"b = box(0, 0, 50, 40)  # 左上の角\nresult = crop(image, b).width", "answered"),
    "non-ASCII identifiers": ("коробка = box(0, 0, 50, 40)\n猫 = crop(image, коробка)\nresult = 猫.width", "answered"),
    "fullwidth identifier (NFKC makes it b)": ("ｂ = box(0, 0, 50, 40)\nresult = crop(image, b).width", "answered"),
    "right-to-left override in a comment": (f"{BODY}  # \u202eevil\u202c", "answered"),
    # truncated programs: never completed by a guess
    "cut mid-call": ("b = box(0, 0, 50, 40)\nresult = crop(image, b", "extract"),
    "cut mid-call over two lines": ("b = box(0, 0, 50, 40)\nresult = crop(image,\n              b", "extract"),
    "cut mid-string": ("b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = f'{c.width} pix", "extract"),
    "cut after a dot": ("b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.", "extract"),
    "cut mid-name": ("b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.wid", "check"),
    "cut at the token limit": (Completion("b = box(0, 0, 50, 40)\nresult = crop(image, b", finish_reason="length"),
                               "extract"),
    "cut inside an open fence": ("```python\nb = box(0, 0, 50, 40)\nresult = crop(ima", "extract"),
    # wrong tools
    "unknown tool names": ("objs = find_all_objects(image, 'cat')\nresult = how_many(objs)", "check"),
    "cv2.imread": ("img = cv2.imread('photo.jpg')\nresult = img.shape[1]", "check"),
    "model.predict": ("result = model.predict(image)", "check"),
    "PIL habits": ("from PIL import Image\nimg = Image.open('photo.jpg')\nresult = img.size[0]", "check"),
    "pytesseract": ("import pytesseract\nresult = pytesseract.image_to_string(image)", "check"),
    "open() to write a file": (f"f = open('{PWNED}', 'w')\nresult = f.write('x')", "check"),
    "__import__('os')": (f"result = __import__('os').system('touch {PWNED}')", "check"),
    "os.system after an import": (f"import os\nresult = os.system('touch {PWNED}')", "check"),
    "subprocess": (f"import subprocess\nresult = subprocess.run(['touch', '{PWNED}'])", "check"),
    "eval / exec": ("exec('import os')\nresult = eval('1 + 1')", "check"),
    "getattr escape": ("result = getattr(image, '__class__')", "check"),
    "dunder attribute": ("result = image.__class__.__bases__[0].__subclasses__()", "check"),
    "a tool that exists but is not offered": ("result = generate('a cat')", "check"),
    "an inverted box (fails while running)": ("b = box(10, 10, 5, 5)\nresult = crop(image, b).width", "run"),
    # control characters
    "NUL bytes": ("b = box(0,\x00 0, 50, 40)\x00\nresult = crop(image, b).width\x00", "answered"),
    "NUL bytes only": ("\x00" * 1000, "extract"),
    "terminal escape sequences": ("\x1b[32mb = box(0, 0, 50, 40)\x1b[0m\n\x1b]0;title\x07"
                                  "result = crop(image, b).width\x1b[K", "answered"),
    "C0 and C1 controls": ("\x01\x02b = box(0, 0, 50, 40)\x1f\n\x85result = crop(image, b).width\x9b", "answered"),
    "unicode line separators": ("b = box(0, 0, 50, 40)\u2028result = crop(image, b).width\u2029", "answered"),
    "zero-width characters in names": ("b = b\u200bo\u200dx(0, 0, 50, 40)\nresult = crop(image, b).width", "answered"),
    "chat template tokens": (f"<|im_start|>assistant\n{BODY}<|im_end|><|endoftext|>", "answered"),
    "non-UTF-8 bytes": (b"\xff\xfe\x80result = \xc3(image)\n", "extract"),
    "a statement that does not parse after good ones": (f"{BODY}\nresult = = 3", "extract"),
    "lone surrogates": ("result = '\udcff\udcfe'\nresult = \udcff", "extract"),
    # gigantic outputs: refused unread, the repair prompt and the state stay small
    "5 MB of prose": ("the cat is " * 480_000, "extract"),
    "100k lines of code": ("\n".join(f"x{i} = {i}" for i in range(100_000)), "extract"),
    "a 5 MB string literal": ("result = '" + "a" * 5_000_000 + "'", "extract"),
    "5 MB of bytes": (b"x = 1\n" * 900_000, "extract"),
    "a good program, then 5 MB of rambling": (BODY + "\n" + "and so on " * 500_000, "extract"),
    "deep nesting": ("result = " + "(" * 5000 + "1" + ")" * 5000, "extract"),
}


@pytest.mark.parametrize("reply, outcome", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_answer_is_used_or_repaired_never_a_crash(reg, reply, outcome):
    """Given a first answer from the planner that is hostile in one way (see the ids),
    when the agent answers a question with one repair allowed,
    then the program in the answer runs when there is one, else the answer is refused at the named stage with
    problems for the repair (never completed by a guess), and the repair answers — in bounded time, with a
    repair prompt and a kept raw answer of bounded size."""
    agent, llm = _agent([reply, GOOD], reg, max_repairs=1)
    t0 = time.perf_counter()
    ans = agent.ask(IMAGE, "How wide is the top-left corner crop?")
    assert time.perf_counter() - t0 < SECONDS
    assert isinstance(ans, AgentAnswer) and ans.value == 50
    first = ans.attempts[0]
    if outcome == "answered":
        assert [a.stage for a in ans.attempts] == ["answered"] and len(llm.calls) == 1
        assert [s.tool for s in ans.trace.steps] == ["box", "crop"]
    else:
        assert [a.stage for a in ans.attempts] == [outcome, "answered"]
        assert first.problems and all(isinstance(p, str) and p.strip() for p in first.problems)
        repair_prompt = llm.calls[1].last_user
        assert len(repair_prompt) < PREVIOUS_CHARS + 8000
    assert isinstance(first.raw_output, str) and len(first.raw_output) <= MAX_REPLY_CHARS
    json.dumps([a.to_json() for a in ans.attempts])   # the attempts are plain data (a session stores them)


CUT = {
    "mid-call": "b = box(0, 0, 50, 40)\nresult = crop(image, b",
    "mid-string": "b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = f'{c.width} pix",
    "after an operator": "b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.width +",
}


@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("text", list(CUT.values()), ids=list(CUT))
def test_a_cut_off_answer_is_never_completed_by_a_guess(reg, text, mode):
    """Given an answer cut off in the middle of its last statement, whatever the finish reason says
    (a plain "stop", or a stream, which has none),
    when the agent plans,
    then the attempt is refused as cut off, naming the unfinished statement, and no program of the
    statements before it (`result = b`, the box instead of the width) is run."""
    agent, llm = _agent([text, GOOD], reg, max_repairs=1)
    if mode == "stream":
        events = list(agent.stream(IMAGE, "How wide is the corner crop?"))
        ans = events[-1].answer
    else:
        ans = agent.ask(IMAGE, "How wide is the corner crop?")
    first = ans.attempts[0]
    assert first.stage == "extract" and first.program is None
    assert "stops in the middle of a statement" in first.problems[0]
    assert text.splitlines()[-1].strip() in first.problems[0]
    assert ans.value == 50 and len(ans.attempts) == 2


HOPELESS = {
    "empty": "",
    "prose": "I cannot do that.",
    "cut off": Completion("result = crop(image,", finish_reason="length"),
    "unknown tool": "result = os.system('id')",
    "5 MB": "x" * 5_000_000,
    "NUL": "\x00\x00\x00",
    "non-UTF-8": b"\xff\xfe",
}


@pytest.mark.parametrize("stream", [False, True], ids=["ask", "stream"])
@pytest.mark.parametrize("bad", list(HOPELESS.values()), ids=list(HOPELESS))
def test_a_model_that_never_writes_a_program_gives_up_after_bounded_repairs(reg, bad, stream):
    """Given a model that answers the same hostile thing every time and max_repairs=2,
    when the agent answers (asked, and streamed),
    then the model is asked exactly three times and the turn ends in AgentFailed (a VistraceError with
    a message and a hint) carrying all three attempts — not a crash, not a loop."""
    agent, llm = _agent([bad] * 3, reg, max_repairs=2)
    if stream:
        events = list(agent.stream(IMAGE, "How wide?"))
        assert events[-1].kind == "failed"
        err = events[-1].error
    else:
        with pytest.raises(AgentFailed) as info:
            agent.ask(IMAGE, "How wide?")
        err = info.value
    assert isinstance(err, VistraceError) and err.message and err.hint
    assert len(llm.calls) == 3 and [a.number for a in err.attempts] == [1, 2, 3]
    assert all(a.stage in ("extract", "check") and a.problems for a in err.attempts)
    assert "no answer after 3 attempts" in err.message
    json.loads(json.dumps(err.to_json()))


def test_the_session_keeps_the_refused_attempts_and_stays_small(reg, tmp_path, monkeypatch):
    """Given a session and a model whose answers are 5 MB of text, then a tool that is not there,
    when the turn fails,
    then the session records the failed turn (its error, the rejected program) and its attempts survive
    reopening, while the database holds only a bounded part of the 5 MB answer."""
    from vistrace.agent.session import Session

    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "home"))
    with Session("hostile") as s:
        agent, llm = _agent(["the cat is " * 480_000, "result = os.system('id')"], reg, max_repairs=1, session=s)
        with pytest.raises(AgentFailed) as info:
            agent.ask(IMAGE, "How wide?")
        assert [a.stage for a in info.value.attempts] == ["extract", "check"]
        assert len(info.value.attempts[0].raw_output) <= KEPT_RAW_CHARS + 100
    with Session("hostile") as s:
        turn = s.history()[-1]
        assert not turn.ok and turn.program == "result = os.system('id')\n"
        assert "rejected by check" in turn.error and "'os'" in turn.error
        attempts = s.values()["attempts"]
        assert [a["stage"] for a in attempts] == ["extract", "check"]
        assert "max_reply_chars" in attempts[0]["problems"][0]
    db = tmp_path / "home" / "sessions.sqlite"
    size = db.stat().st_size + sum(p.stat().st_size for p in db.parent.glob("sessions.sqlite-*"))
    assert size < 2_000_000


# ------------------------------------------------------------------------------------- the reply cap
def test_the_extractor_refuses_an_answer_over_the_cap_with_a_clear_error():
    """Given answers just over the cap (text, and bytes over four bytes a character),
    when the program is extracted,
    then ReplyTooLong (a NoProgram, an LLMError) says how long the answer was, the limit and the setting,
    and it is raised at once, before the text is searched."""
    with pytest.raises(ReplyTooLong) as info:
        extract_program("result = 1\n" + "#" * MAX_REPLY_CHARS)
    err = info.value
    assert isinstance(err, NoProgram) and isinstance(err, LLMError)
    assert err.limit == MAX_REPLY_CHARS and err.size == MAX_REPLY_CHARS + 11
    assert f"{MAX_REPLY_CHARS:,} characters" in err.message and "max_reply_chars" in err.message and err.hint
    with pytest.raises(ReplyTooLong, match="bytes"):
        extract_program(b"\xff" * (4 * MAX_REPLY_CHARS + 1))
    t0 = time.perf_counter()
    with pytest.raises(ReplyTooLong):
        extract_program("(" * 50_000_000)
    assert time.perf_counter() - t0 < 1.0
    assert extract_program("result = 1" + " " * (MAX_REPLY_CHARS - 10)) == "result = 1\n"   # at the cap: read


@pytest.mark.parametrize("cap, accepted", [(20, False), (len(GOOD), True), (10_000, True)])
def test_the_cap_is_configurable_on_the_agent(reg, cap, accepted):
    """Given Agent(max_reply_chars=N) and a good program of 56 characters,
    when the agent answers,
    then the program is used when N allows it, and refused as too long (naming the setting) when not."""
    agent, _ = _agent([GOOD, GOOD], reg, max_repairs=1, max_reply_chars=cap)
    if accepted:
        assert agent.ask(IMAGE, "How wide?").value == 50
    else:
        with pytest.raises(AgentFailed) as info:
            agent.ask(IMAGE, "How wide?")
        assert all("max_reply_chars" in a.problems[0] for a in info.value.attempts)
    with pytest.raises(InputError):
        vistrace.Agent(llm=ScriptedLLM([]), registry=reg, max_reply_chars=0)


class EndlessStream:
    """TEST DOUBLE — a planner whose stream never ends (a broken server that keeps sending); counts what it sent."""

    name = "endless-test-double"
    supports_grammar = supports_json_schema = supports_images = False

    def __init__(self):
        self.sent = 0
        self.closed = False
        self.calls = 0

    def complete(self, messages, **kw):
        return Completion(GOOD)

    def stream(self, messages, **kw):
        self.calls += 1
        if self.calls > 1:
            yield GOOD
            return
        try:
            while True:
                self.sent += 1
                yield "x = 1\n"
        finally:
            self.closed = True


def test_a_stream_that_never_ends_is_read_only_up_to_the_cap(reg):
    """Given a planner whose first stream never ends,
    when the agent streams a turn with max_reply_chars=6000,
    then it stops reading just past the cap and closes the stream, refuses the answer as too long, and
    the repair answers."""
    llm = EndlessStream()
    agent = vistrace.Agent(llm=llm, registry=reg, cache=False, max_repairs=1, max_reply_chars=6000)
    events = list(agent.stream(IMAGE, "How wide?"))
    ans = events[-1].answer
    assert ans.value == 50 and llm.closed and llm.sent <= 6000 // 6 + 2
    first = ans.attempts[0]
    assert first.stage == "extract" and first.finish_reason == "too_long" and "max_reply_chars" in first.problems[0]


def test_a_typed_planner_that_ignores_max_tokens_is_stopped_at_the_cap(reg):
    """Given a client planning statement by statement (prefill) that answers one line with 5 MB,
    when the agent plans,
    then planning stops there (too long) and the repair's statements answer."""
    agent, llm = _agent(["x = '" + "a" * 5_000_000 + "'\n", "b = box(0, 0, 50, 40)\n",
                         "result = crop(image, b).width"], reg, max_repairs=1, supports_grammar=True,
                        supports_prefill=True)
    t0 = time.perf_counter()
    ans = agent.ask(IMAGE, "How wide?")
    assert time.perf_counter() - t0 < SECONDS
    first = ans.attempts[0]
    assert first.mode == "typed" and first.stage == "extract" and first.finish_reason == "too_long"
    assert ans.value == 50


def test_a_server_sending_megabytes_is_refused_by_the_client(reg):
    """Given an OpenAI-compatible server whose first answer is 3 MB and a client capped at 1 MB,
    when the agent answers through it (a whole answer, then streamed),
    then the client stops reading at its cap (ReplyTooLong, naming max_response_bytes), or the agent stops
    reading the stream at max_reply_chars; either way the attempt is refused as too long and the repair answers."""
    from vistrace.agent.llm.openai import OpenAICompatible

    with ScriptedServer(["y" * 3_000_000, GOOD, "z" * 3_000_000, GOOD]) as server:
        url = server.spec.removeprefix("openai:").split("#")[0]
        llm = OpenAICompatible(url, "scripted", retries=0, max_response_bytes=1_000_000)
        agent = vistrace.Agent(llm=llm, registry=reg, cache=False, max_repairs=1, grammar=False)
        ans = agent.ask(IMAGE, "How wide?")
        assert ans.value == 50 and ans.attempts[0].stage == "extract"
        assert "max_response_bytes" in ans.attempts[0].problems[0]
        events = list(agent.stream(IMAGE, "How wide?"))
        ans = events[-1].answer
        assert ans.value == 50 and ans.attempts[0].finish_reason == "too_long"
        assert "max_reply_chars" in ans.attempts[0].problems[0]


def test_one_gigantic_stream_event_is_refused_by_the_client():
    """Given a server that streams one event line of 3 MB (no newline to split it at),
    when the client reads the stream with max_response_bytes=1 MB,
    then it stops at the cap with ReplyTooLong instead of buffering the whole line."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from vistrace.agent.llm.base import Message
    from vistrace.agent.llm.openai import OpenAICompatible

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                self.wfile.write(b"data: " + b"q" * 3_000_000)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        llm = OpenAICompatible(f"http://127.0.0.1:{server.server_address[1]}/v1", "m", retries=0,
                               max_response_bytes=1_000_000)
        with pytest.raises(ReplyTooLong, match="max_response_bytes"):
            for _ in llm.stream([Message("user", "hi")], max_tokens=8):
                pass
    finally:
        server.shutdown()
        server.server_close()


def test_long_prose_search_is_bounded_in_time():
    """Given answers just under the cap built to make the prose-cutting search expensive (lines that look
    like code but never parse, thousands of broken fences, an unclosed triple quote after many lines),
    when extracted,
    then each takes well under a second (the parse budget is shared by all candidates)."""
    n = MAX_REPLY_CHARS - 100
    texts = ["\n".join(f"Step{i} (look) and" for i in range(4000))[:n],
             "\n".join(f"x{i} = ({i}" for i in range(4000))[:n],
             ("```python\nx = (1\n```\n" * 3000)[:n],
             ("\n".join(f"x{i} = {i}" for i in range(3000)) + "\ny = '''abc")[:n],
             "\n".join(f"if x{i}:" for i in range(4000))[:n]]
    for text in texts:
        t0 = time.perf_counter()
        try:
            extract_program(text)
        except NoProgram:
            pass
        assert time.perf_counter() - t0 < 1.5


def test_the_checkpoint_database_is_valid_sqlite(tmp_path, monkeypatch, reg):
    """Given a session turn whose answer held NUL bytes and a lone surrogate,
    when the turn is saved,
    then the NUL is dropped and the surrogate replaced ('?'), and the database reads back (no encoding
    error in the checkpointer)."""
    from vistrace.agent.session import Session

    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "home"))
    with Session("nul") as s:
        agent, _ = _agent(["result = '\x00\udcff'\n\x00"], reg, max_repairs=1, session=s)
        assert agent.ask(IMAGE, "How wide?").value == "?"
    with sqlite3.connect(tmp_path / "home" / "sessions.sqlite") as con:
        assert con.execute("select count(*) from checkpoints").fetchone()[0] > 0
    with Session("nul") as s:
        assert s.history()[-1].ok
