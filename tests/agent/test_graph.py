"""The agent graph (plan -> check -> run -> repair -> answer) driven by a scripted LLM test double.

Real tools run on a real image: the model-free built-ins (box, crop, zoom, count) for speed, and the
offline experts (detect, classify) where marked slow.  Only the planner's replies are scripted.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

import vistrace
from tests.agent.scripted_llm import ScriptedLLM
from vistrace.agent.events import EVENT_KINDS
from vistrace.agent.llm.base import Completion, LLMUnavailable
from vistrace.agent.result import AgentAnswer, AgentFailed
from vistrace.errors import InputError
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin

IMAGE = Path(__file__).resolve().parents[2] / "examples" / "images" / "chelsea.jpg"   # 451x300, one cat
GOOD = "b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.width\n"


@pytest.fixture(scope="module")
def reg():
    r = Registry()
    register_builtin(r)
    return r


def agent_with(replies, reg, **kw):
    llm = ScriptedLLM(list(replies), **{k: kw.pop(k) for k in ("supports_grammar", "supports_json_schema") if k in kw})
    return vistrace.Agent(llm=llm, registry=reg, cache=False, **kw), llm


def test_invalid_plan_is_repaired_then_answered(reg):
    """Given a first plan calling an unknown tool and a corrected second plan,
    when the agent answers,
    then the check problem (with line:col and the hint) reaches the second prompt and the answer
    comes from the second program, citing the steps that made it."""
    agent, llm = agent_with(["b = bx(0, 0, 50, 40)\nresult = crop(image, b).width", GOOD], reg)
    ans = agent.ask(IMAGE, "How wide is the top-left corner crop?")
    assert isinstance(ans, AgentAnswer) and ans.value == 50
    assert [a.stage for a in ans.attempts] == ["check", "answered"]
    assert "line 1:5: unknown tool 'bx'" in ans.attempts[0].problems[0]
    assert "did you mean 'box'" in llm.calls[1].last_user and "b = bx(0, 0, 50, 40)" in llm.calls[1].last_user
    assert ans.program == GOOD and ans.cited_steps == (1, 2)
    assert [s.tool for s in ans.trace.steps] == ["box", "crop"]


def test_runtime_error_is_repaired_with_line_step_and_tool(reg):
    """Given a plan that fails while running (an inverted box) and a corrected plan,
    when the agent answers,
    then the runtime error reaches the repair prompt with its line, step and tool, and is kept in the attempt."""
    agent, llm = agent_with(["b = box(10, 10, 5, 5)\nresult = crop(image, b).width", GOOD], reg)
    ans = agent.ask(IMAGE, "How wide is the corner?")
    first = ans.attempts[0]
    assert first.stage == "run" and first.error["type"] == "ToolArgumentError"
    assert (first.error["line"], first.error["step"], first.error["tool"]) == (1, 1, "box")
    assert "line 1:5, step 1, tool box" in first.problems[0] and "in: b = box(10, 10, 5, 5)" in first.problems[0]
    assert "line 1:5, step 1, tool box" in llm.calls[1].last_user
    assert ans.value == 50 and len(ans.attempts) == 2


def test_attempts_exhausted_fail_clearly_with_every_attempt(reg):
    """Given a model that never writes a working program and max_repairs=2,
    when the agent answers,
    then AgentFailed carries all three attempts (program, stage, problems, raw output) and the model
    was asked exactly three times."""
    bad = ["result = nope(image)", "I am not sure what you mean.", "b = box(10, 10, 5, 5)\nresult = crop(image, b)"]
    agent, llm = agent_with(bad, reg, max_repairs=2)
    with pytest.raises(AgentFailed) as info:
        agent.ask(IMAGE, "What is it?")
    err = info.value
    assert len(llm.calls) == 3 and [a.number for a in err.attempts] == [1, 2, 3]
    assert [a.stage for a in err.attempts] == ["check", "extract", "run"]
    assert [a.raw_output for a in err.attempts] == bad
    assert err.attempts[0].program.startswith("result = nope(image)") and err.attempts[1].program is None
    assert all(a.problems for a in err.attempts)
    assert "no answer after 3 attempts" in err.message and err.stage == "run"
    assert err.where.step == 1 and err.where.tool == "box"   # where the last attempt failed
    assert err.run is not None and err.run.error is not None  # the last run's trace is kept
    assert json.loads(json.dumps(err.to_json()))["attempts"][2]["error"]["tool"] == "box"


BAD_OUTPUTS = {
    "empty": "",
    "whitespace": "   \n\n  ",
    "prose only": "The image shows a cat lying on a blanket, so the answer is one.",
    "truncated": Completion("b = box(0, 0, 50, 40)\nresult = crop(image, b", finish_reason="length"),
    "truncated name": Completion("b = box(0, 0, 50, 40)\nresult = cro", finish_reason="length"),
    "wrong tool names": "objs = find_all_objects(image, 'cat')\nresult = how_many(objs)",
    "non-UTF-8 bytes": b"\xff\xfe\x80result = \xc3(image)\n",
    "lone surrogates": "result = \udcff\udcfe",
    "unclosed fence": "```python\n",
    "NUL characters": "result\x00 = \x00",
    "unknown input": "result = crop(img, box(0, 0, 5, 5)).width",
    "no result": "b = box(0, 0, 50, 40)\nif b:\n    x = 1",
    "huge prose": "the cat is " * 50000,
    "deep nesting": "result = " + "(" * 5000 + "1" + ")" * 5000,
}


@pytest.mark.parametrize("bad", list(BAD_OUTPUTS.values()), ids=list(BAD_OUTPUTS))
def test_bad_output_never_crashes_and_is_repaired(reg, bad):
    """Given a first reply that holds no usable program (empty, prose, cut off, wrong tools, not UTF-8...),
    when the agent answers,
    then the bad reply becomes problems for a second attempt, which answers."""
    agent, llm = agent_with([bad, GOOD], reg)
    ans = agent.ask(IMAGE, "How wide is the corner?")
    assert ans.value == 50 and len(ans.attempts) == 2
    first = ans.attempts[0]
    assert first.stage in ("extract", "check", "run") and first.problems
    assert all(isinstance(p, str) and p.encode("utf-8") for p in first.problems)
    assert isinstance(first.raw_output, str) and first.raw_output.encode("utf-8") is not None


@pytest.mark.parametrize("bad", [b"\xff" * 10, "", "result = \udcff", Completion("result = (", finish_reason="length")],
                         ids=["bytes", "empty", "surrogate", "truncated"])
def test_only_bad_outputs_end_in_agent_failed_not_a_crash(reg, bad):
    """Given a model that only ever answers garbage, when the agent answers (streaming too),
    then the turn ends in AgentFailed with every attempt, and the stream ends with a `failed` event."""
    agent, _ = agent_with([bad] * 2, reg, max_repairs=1)
    with pytest.raises(AgentFailed) as info:
        agent.ask(IMAGE, "What is it?")
    assert len(info.value.attempts) == 2
    agent, _ = agent_with([bad] * 2, reg, max_repairs=1)
    events = list(agent.stream(IMAGE, "What is it?"))
    assert events[-1].kind == "failed" and len(events[-1].error.attempts) == 2


@pytest.mark.parametrize("bad", ['{"program": 42}', '{"code": "result = 1"}', '{"program": "', "not json at all"])
def test_bad_json_answers_are_repaired(reg, bad):
    """Given a structured-output model whose JSON answer lacks a program text, when the agent answers,
    then the attempt is an `extract` (or check) problem and the next attempt answers."""
    agent, _ = agent_with([bad, json.dumps({"program": GOOD})], reg, supports_json_schema=True)
    ans = agent.ask(IMAGE, "How wide?")
    assert ans.value == 50 and ans.attempts[0].stage in ("extract", "check")


def test_truncation_is_named_in_the_problems(reg):
    """Given a reply cut off at the token limit, when it is repaired, then the problems say it was cut off."""
    agent, llm = agent_with([Completion("b = box(0, 0, 50, 40)\nresult = crop(image, b", finish_reason="length"),
                             GOOD], reg)
    ans = agent.ask(IMAGE, "How wide?")
    assert any("cut off at 512 tokens" in p for p in ans.attempts[0].problems)
    assert ans.attempts[0].finish_reason == "length"


def test_the_model_unavailable_ends_the_turn_without_repairs(reg):
    """Given a model that cannot be loaded, when the agent answers,
    then the turn fails at once (no repair), naming the model error and its fix."""
    agent, llm = agent_with([LLMUnavailable("model file /x.gguf is missing", hint="run `vistrace models fetch`")], reg)
    with pytest.raises(AgentFailed) as info:
        agent.ask(IMAGE, "What is it?")
    err = info.value
    assert len(llm.calls) == 1 and err.stage == "llm"
    assert "model file /x.gguf is missing" in err.message and "vistrace models fetch" in err.hint


def test_the_same_program_again_is_pointed_out(reg):
    """Given a model that repeats its rejected program, when repaired, then the problems say so."""
    agent, llm = agent_with(["result = nope(image)", "result = nope(image)", GOOD], reg)
    ans = agent.ask(IMAGE, "How wide?")
    assert any("same program as attempt 1" in p for p in ans.attempts[1].problems)


@pytest.mark.parametrize("grammar, caps, expect", [
    (True, {"supports_grammar": True}, "grammar"),
    (False, {"supports_grammar": True}, "plain"),
    (True, {"supports_json_schema": True}, "json_schema"),
    (True, {}, "plain"),
])
def test_decoding_constraint_follows_the_model(reg, grammar, caps, expect):
    """Given models with different capabilities, when planning,
    then the GBNF grammar (from the registry, knowing the input names) goes to a grammar-capable model,
    a JSON schema to a structured-output one, and nothing otherwise or with grammar=False."""
    reply = json.dumps({"program": GOOD}) if expect == "json_schema" else GOOD
    agent, llm = agent_with([reply], reg, grammar=grammar, **caps)
    ans = agent.ask(IMAGE, "How wide?")
    call = llm.calls[0]
    assert ans.value == 50 and ans.attempts[0].mode == expect
    assert (call.grammar is not None) == (expect == "grammar")
    assert (call.json_schema is not None) == (expect == "json_schema")
    if expect == "grammar":
        assert "result" in call.grammar and "image" in call.grammar and "crop" in call.grammar


def test_stream_yields_typed_events_in_order(reg):
    """Given a rejected plan then a good one, when streaming,
    then the events come in graph order, tokens join to the raw output, and step events match the trace."""
    agent, llm = agent_with(["result = nope(image)", GOOD], reg)
    events = list(agent.stream(IMAGE, "How wide?"))
    kinds = [e.kind for e in events]
    assert set(kinds) <= set(EVENT_KINDS)
    compact = [k for i, k in enumerate(kinds) if k != "llm_token" or kinds[i - 1] != "llm_token"]
    assert compact == ["plan_started", "llm_token", "program", "check_problems", "repair", "plan_started",
                       "llm_token", "program", "step", "step", "answer"]
    tokens = "".join(e.text for e in events if e.kind == "llm_token")
    assert tokens == "result = nope(image)" + GOOD
    ans = events[-1].answer
    steps = [e.step for e in events if e.kind == "step"]
    assert [s["id"] for s in steps] == [s.id for s in ans.trace.steps] and steps[1]["tool"] == "crop"
    assert llm.calls[0].streamed and all(json.dumps(e.to_json(), default=str) for e in events)


def test_answer_cites_only_the_steps_the_result_rests_on(reg):
    """Given a program with a step the result does not use, when answered,
    then the cited steps are exactly those on the result's chain."""
    program = ("a = box(0, 0, 10, 10)\nunused = crop(image, a)\nb = box(0, 0, 50, 40)\n"
               "patch = zoom(image, b)\nresult = patch.width\n")
    agent, _ = agent_with([program], reg)
    ans = agent.ask(IMAGE, "How wide is the zoomed corner?")
    assert [s.tool for s in ans.trace.steps] == ["box", "crop", "box", "zoom"]
    assert ans.cited_steps == (3, 4)
    assert ans.citations[0].startswith("step 3 (line 3, box)")


def test_the_planner_is_told_the_inputs_by_name_only(reg):
    """Given two images, when planning, then the prompt names both inputs, without sizes or file names (a small
    model copies those into the program as constants)."""
    agent, llm = agent_with(["result = image2.width - image.width"], reg)
    ans = agent.ask([IMAGE, IMAGE], "Difference in width?")
    assert ans.value == 0
    text = llm.calls[0].last_user
    assert "image (Image)" in text and "image2 (Image)" in text and "chelsea" not in text and "451" not in text and "image2 (Image" in text


def test_async_ask(reg):
    """Given an agent, when awaited with aask, then it answers like ask."""
    agent, _ = agent_with([GOOD], reg)
    ans = asyncio.run(agent.aask({"image": str(IMAGE)}, "How wide?"))
    assert ans.value == 50


@pytest.mark.parametrize("images, question, message", [
    (IMAGE, "  ", "the question is empty"),
    ("missing.png", "What?", "image file not found"),
    ({"not a name": IMAGE}, "What?", "is not a valid name"),
    (42, "What?", "an image must be a path"),
])
def test_bad_inputs_are_input_errors(reg, images, question, message):
    """Given an empty question or bad images, when asking, then an InputError says what is wrong."""
    agent, llm = agent_with([GOOD], reg)
    with pytest.raises(InputError, match=message):
        agent.ask(images, question)
    assert not llm.calls


def test_agent_is_exported_lazily():
    """Given `import vistrace`, when vistrace.Agent is used, then it is the agent class (loaded on demand)."""
    from vistrace.agent.agent import Agent

    assert vistrace.Agent is Agent and "Agent" in vistrace.__all__


@pytest.mark.slow
def test_offline_experts_detect_and_count_the_cat():
    """Given the installed offline experts and a photo with one cat,
    when the planner's program detects and counts cats,
    then the answer is 1 and cites the detect and count steps (the CenterNet backend is named)."""
    from vistrace.tools import default_registry

    llm = ScriptedLLM(["cats = detect(image, 'cat')\nn = count(cats)\nlabels = classify(image)\nresult = n"])
    ans = vistrace.Agent(llm=llm, registry=default_registry(), cache=False).ask(IMAGE, "How many cats?")
    assert ans.value == 1
    tools = [s.tool for s in ans.trace.steps]
    assert tools == ["detect", "count", "classify"] and ans.cited_steps == (1, 2)
    assert ans.trace.steps[0].backend == "centernet"
