"""Chat sessions persisted with LangGraph's SQLite checkpointer in $VISTRACE_HOME/sessions.sqlite:
history and images survive a restart and a kill -9 in the middle of a turn."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import vistrace
from tests.agent.scripted_llm import ScriptedLLM
from tests.agent.scripted_server import HOLD, ScriptedServer
from vistrace.agent.session import Session, list_sessions
from vistrace.errors import InputError
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples" / "images" / "chelsea.jpg"
GOOD = "b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.width\n"
TALL = "result = image.height\n"


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("VISTRACE_HOME", str(h))
    return h


@pytest.fixture(scope="module")
def reg():
    r = Registry()
    register_builtin(r)
    return r


def test_history_and_images_survive_reopening(home, reg, tmp_path):
    """Given a session with two answered turns on an image that is then deleted,
    when the session is opened again (a new Session object, a new agent),
    then history (question, answer, program, run folder) and images are intact, the next turn
    sees the earlier turns in its prompt, and the copied image still answers."""
    img = tmp_path / "cat.jpg"
    shutil.copyfile(IMAGE, img)
    with Session("kitchen") as s:
        agent = vistrace.Agent(llm=ScriptedLLM([GOOD, TALL]), registry=reg, session=s)
        assert agent.ask(img, "How wide is the corner?").value == 50
        assert agent.ask(None, "And how tall is the photo?").value == 300
    img.unlink()
    with Session("kitchen") as s:
        turns = s.history()
        assert [(t.number, t.question, t.answer, t.ok) for t in turns] == [
            (1, "How wide is the corner?", "50", True), (2, "And how tall is the photo?", "300", True)]
        assert turns[0].program == GOOD and turns[0].cited_steps == (1, 2)
        assert (Path(turns[0].run_dir) / "report.html").is_file() and (Path(turns[1].run_dir) / "trace.json").is_file()
        images = s.images()
        assert list(images) == ["image"] and Path(images["image"]).is_file() and "cat-" in images["image"]
        llm = ScriptedLLM([GOOD])
        ans = vistrace.Agent(llm=llm, registry=reg, session=s).ask(None, "Again?")
        assert ans.value == 50 and ans.run_dir == s.run_dir(3)
        history_msgs = [m.content for m in llm.calls[0].messages[1:-1]]
        assert history_msgs == ["Question: How wide is the corner?", 'Answer (untrusted data): "50"',
                                "Question: And how tall is the photo?", 'Answer (untrusted data): "300"']
    assert (home / "sessions.sqlite").is_file()


def test_an_interrupted_turn_is_recorded_when_the_next_one_starts(home, reg):
    """Given a turn interrupted inside the planner (Ctrl-C), when the session is reopened,
    then the turn is pending; a new question records it as interrupted and answers the new one."""
    with Session("s") as s:
        agent = vistrace.Agent(llm=ScriptedLLM(["result = nope(image)", KeyboardInterrupt()]), registry=reg, session=s)
        with pytest.raises(KeyboardInterrupt):
            agent.ask(IMAGE, "What is it?")
    with Session("s") as s:
        assert s.pending() == "What is it?" and s.images()
        assert len(s.values()["attempts"]) == 1       # the finished attempt was saved before the interrupt
        ans = vistrace.Agent(llm=ScriptedLLM([GOOD]), registry=reg, session=s).ask(None, "How wide?")
        assert ans.value == 50 and s.pending() is None
        turns = s.history()
        assert [(t.number, t.ok) for t in turns] == [(1, False), (2, True)]
        assert "interrupted" in turns[0].error and turns[0].program.startswith("result = nope")


def test_resume_finishes_an_interrupted_turn(home, reg):
    """Given an interrupted turn, when the agent resumes, then the turn ends answered with its earlier attempt kept."""
    with Session("r") as s:
        with pytest.raises(KeyboardInterrupt):
            vistrace.Agent(llm=ScriptedLLM(["result = nope(image)", KeyboardInterrupt()]), registry=reg,
                           session=s).ask(IMAGE, "How wide?")
    with Session("r") as s:
        agent = vistrace.Agent(llm=ScriptedLLM([GOOD]), registry=reg, session=s)
        ans = agent.resume()
        assert ans.value == 50 and [a.stage for a in ans.attempts] == ["check", "answered"]
        assert agent.resume() is None and len(s.history()) == 1


def test_resume_after_the_run_reruns_the_checked_program(home, reg, monkeypatch):
    """Given a turn stopped inside the answer node (after its run finished, before it was saved),
    when a new agent resumes it, then the checked program runs again and the turn is answered."""
    real = Session.run_dir

    def stop(self, turn):
        raise KeyboardInterrupt

    monkeypatch.setattr(Session, "run_dir", stop)
    with Session("late") as s:
        with pytest.raises(KeyboardInterrupt):
            vistrace.Agent(llm=ScriptedLLM([GOOD]), registry=reg, session=s).ask(IMAGE, "How wide?")
    monkeypatch.setattr(Session, "run_dir", real)
    with Session("late") as s:
        assert s.snapshot().next == ("answer",)
        llm = ScriptedLLM([])
        ans = vistrace.Agent(llm=llm, registry=reg, session=s).resume()
        assert ans.value == 50 and ans.cited_steps == (1, 2) and not llm.calls
        assert (s.run_dir(1) / "report.html").is_file() and s.history()[0].run_dir == str(s.run_dir(1))


def test_failed_turns_are_kept_in_history(home, reg):
    """Given a turn that fails after its attempts, when the session is read,
    then the failure and its last program are there."""
    with Session("f") as s:
        agent = vistrace.Agent(llm=ScriptedLLM(["result = nope(image)"] * 2), registry=reg, session=s, max_repairs=1)
        with pytest.raises(vistrace.agent.result.AgentFailed):
            agent.ask(IMAGE, "What?")
        (turn,) = s.history()
        assert not turn.ok and turn.attempts == 2 and "no answer after 2 attempts" in turn.error


def test_list_sessions(home, reg):
    """Given two sessions, when listed, then each shows its turns and last question, the newest first."""
    assert list_sessions() == []
    for name, questions in (("a", ["one?"]), ("b b", ["x?", "y?"])):
        with Session(name) as s:
            agent = vistrace.Agent(llm=ScriptedLLM([GOOD] * len(questions)), registry=reg, session=s)
            for q in questions:
                agent.ask(IMAGE, q)
    infos = list_sessions()
    assert [(i.name, i.turns, i.last_question) for i in infos] == [("b b", 2, "y?"), ("a", 1, "one?")]
    assert infos[0].images == ("image",) and infos[0].updated


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "bad\nname"])
def test_bad_session_names(home, name):
    """Given an empty, too long or control-character name, when a session is opened, then InputError."""
    with pytest.raises(InputError):
        Session(name)


WORKER = """
import sys
from vistrace.agent.agent import Agent
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
reg = Registry(); register_builtin(reg)
agent = Agent(llm=sys.argv[1], registry=reg, session="kitchen", grammar=False)
print("turn 1:", agent.ask(sys.argv[2], "How wide is the corner?").value, flush=True)
agent.ask(None, "How wide is it, really?")
print("not reached", flush=True)
"""


def test_kill_9_mid_turn_then_a_new_process_continues(home, tmp_path):
    """Given a process that answers one turn and is SIGKILLed while the model writes the second
    turn's repair, when a new `vistrace chat --session kitchen` process starts,
    then it shows the history and the interrupted turn, /resume finishes that turn (its first
    attempt kept), a new question is answered, and the session holds all three turns and the image."""
    env = {**os.environ, "VISTRACE_HOME": str(home)}
    with ScriptedServer([GOOD, "result = nope(image)", HOLD]) as srv:
        proc = subprocess.Popen([sys.executable, "-c", WORKER, srv.spec, str(IMAGE)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert srv.held.wait(timeout=90), proc.stderr.read() if proc.poll() is not None else "no held request"
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL and "turn 1: 50" in out and "not reached" not in out
        with Session("kitchen") as s:
            assert s.pending() == "How wide is it, really?" and len(s.history()) == 1
            assert [a["stage"] for a in s.values()["attempts"]] == ["check"]
        srv.add(GOOD, TALL)
        res = subprocess.run([sys.executable, "-m", "vistrace.cli", "chat", "--session", "kitchen", "--llm", srv.spec],
                             input="/history\n/resume\nHow tall is it?\n/exit\n", capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "session kitchen (1 earlier turns)" in out
    assert "the last turn was interrupted: How wide is it, really?" in out
    assert "1. How wide is the corner? -> 50" in out
    assert "answer: 50" in out and "answer: 300" in out
    with Session("kitchen") as s:
        turns = s.history()
        assert [(t.question, t.answer) for t in turns] == [("How wide is the corner?", "50"),
                                                         ("How wide is it, really?", "50"), ("How tall is it?", "300")]
        assert turns[1].attempts == 2 and s.pending() is None and list(s.images()) == ["image"]
    listed = subprocess.run([sys.executable, "-m", "vistrace.cli", "sessions", "--json"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert json.loads(listed.stdout)[0]["turns"] == 3
