"""Given a client that continues a prefix, when the planner writes a program one statement at a time, then
each call carries the program so far and a grammar typed by its variables, planning stops at `result`, and
cut-off, repeated or closed answers end the plan the way the agent can explain."""

from __future__ import annotations

from pathlib import Path

import pytest
from vistrace.agent.gbnf import accepts
from vistrace.agent.graph import constraint_mode
from vistrace.agent.llm.base import Completion
from vistrace.agent.stepwise import plan_statements
from vistrace.agent.toolset import planner_tools
from vistrace.tools import default_registry

import vistrace

from .scripted_llm import ScriptedLLM

IMAGE = Path(__file__).resolve().parents[2] / "examples" / "images" / "chelsea.jpg"   # 451x300


@pytest.fixture(scope="module")
def reg():
    return default_registry()


def _plan(reg, replies, **kw):
    llm = ScriptedLLM(list(replies), supports_grammar=True, supports_prefill=True)
    inputs = {"image": "Image"}
    out = plan_statements(llm, [], reg, planner_tools(reg, inputs), inputs, **kw)
    return out, llm


def test_each_statement_is_asked_for_with_the_program_so_far(reg):
    out, llm = _plan(reg, ["dets = detect(image, 'cat')\n", "best = dets.best()\n", "result = best.label\n"])
    assert out.text == "dets = detect(image, 'cat')\nbest = dets.best()\nresult = best.label\n"
    assert out.finish_reason == "stop" and out.statements == 3
    assert [c.prefix for c in llm.calls] == ["", "dets = detect(image, 'cat')\n",
                                             "dets = detect(image, 'cat')\nbest = dets.best()\n"]
    # the third grammar knows best is a Box: its fields are there, Detections' are not
    third = llm.calls[2].grammar
    assert accepts(third, "result = best.label\n") and not accepts(third, "result = best.count\n")
    assert "best: Box" in third.splitlines()[0] and "dets: Detections" in third.splitlines()[0]
    assert not accepts(llm.calls[0].grammar, "result = dets.count\n")   # dets did not exist yet


def test_a_line_the_model_closes_its_answer_after_makes_the_next_one_the_last(reg):
    out, llm = _plan(reg, ["n = detect(image, 'cat').count", "result = n\n"])
    assert out.text == "n = detect(image, 'cat').count\nresult = n\n"
    assert accepts(llm.calls[1].grammar, "result = n\n") and not accepts(llm.calls[1].grammar, "m = n\n")


def test_a_repeated_line_makes_the_next_one_the_last(reg):
    out, llm = _plan(reg, ["a = detect(image, 'cat')\n", "b = detect(image, 'cat')\n", "b2 = detect(image, 'cat')\n",
                           "result = a.count\n"])
    assert out.statements == 4 and not accepts(llm.calls[3].grammar, "c = 1\n")


def test_a_statement_cut_off_is_drawn_again_then_ends_the_plan_as_length(reg):
    cut = Completion("result = 'yes' if a.count > 1 and a", "length")
    out, llm = _plan(reg, ["a = detect(image, 'cat')\n", cut, cut, cut])
    assert out.finish_reason == "length" and out.text.endswith("and a") and len(llm.calls) == 4
    out, _ = _plan(reg, ["a = detect(image, 'cat')\n", cut, "result = a.count\n"])
    assert out.finish_reason == "stop" and out.text.endswith("result = a.count\n")


def test_the_statement_budget_forces_result(reg):
    replies = [f"v{i} = {i}\n" for i in range(3)] + ["result = v1\n"]
    out, llm = _plan(reg, replies, max_statements=4)
    assert out.statements == 4 and accepts(llm.calls[3].grammar, "result = v1\n")
    assert not accepts(llm.calls[3].grammar, "v4 = 1\n")


def test_each_line_gets_at_most_the_line_budget(reg):
    _, llm = _plan(reg, ["a = 1\n", "result = a\n"], max_tokens=100, line_tokens=30)
    assert [c.max_tokens for c in llm.calls] == [30, 30]


@pytest.mark.parametrize("grammar, prefill, json_schema, mode", [
    (True, True, False, "typed"), ("auto", True, False, "typed"), ("typed", True, False, "typed"),
    ("program", True, False, "grammar"), (True, False, False, "grammar"), (False, True, False, "plain"),
    ("plain", True, False, "plain"),
])
def test_constraint_mode(grammar, prefill, json_schema, mode):
    llm = ScriptedLLM([], supports_grammar=True, supports_prefill=prefill, supports_json_schema=json_schema)
    assert constraint_mode(llm, grammar) == mode


def test_an_unknown_decoding_is_refused():
    with pytest.raises(vistrace.errors.InputError, match="grammar must be"):
        vistrace.Agent(llm=ScriptedLLM([]), grammar="fancy")


def test_the_agent_plans_typed_with_a_prefill_client(reg):
    """Given a scripted client that continues prefixes, when the agent answers, then the attempt is typed,
    the program is the statements joined, and it ran."""
    llm = ScriptedLLM(["w = image.width\n", "result = w\n"], supports_grammar=True, supports_prefill=True)
    agent = vistrace.Agent(llm=llm, registry=reg, cache=False)
    ans = agent.ask(IMAGE, "How wide?")
    assert ans.value == 451 and ans.attempts[0].mode == "typed"
    assert ans.program == "w = image.width\nresult = w\n"
    assert all(c.grammar and c.prefix is not None for c in llm.calls)


def test_an_opening_fence_stays_in_the_prefix_not_in_the_program(reg):
    out, llm = _plan(reg, ["```python\ndets = detect(image, 'cat')\n", "result = dets.count\n"])
    assert out.text == "dets = detect(image, 'cat')\nresult = dets.count\n"
    assert llm.calls[1].prefix == "```python\ndets = detect(image, 'cat')\n"
    assert accepts(llm.calls[0].grammar, "```python\nn = 1\n") and not accepts(llm.calls[1].grammar, "```python\nn = 1\n")


def test_a_line_that_failed_before_is_drawn_again_with_sampling(reg):
    """Given a statement that failed in an earlier attempt, when the model writes it again, then that line is
    drawn again (hotter, with another seed) and the new draw is kept."""
    failed = "best = detect(image, 'cat').best()"
    out, llm = _plan(reg, [failed + "\n", "dets = detect(image, 'cat')\n", "result = dets.count\n"],
                     avoid=[failed], temperature=0.0)
    assert out.text == "dets = detect(image, 'cat')\nresult = dets.count\n"
    assert llm.calls[1].prefix == "" and llm.calls[2].prefix == "dets = detect(image, 'cat')\n"


def test_the_agent_repairs_a_runtime_failure_without_repeating_the_failing_line(reg):
    """Given a first program whose line 1 fails at run time, when the repair plan writes that line again,
    then it is drawn again, and the repaired program runs."""
    bad = "b = crop(image, box(0, 0, 10, 10)).width / 0\n"
    llm = ScriptedLLM([bad, "result = b\n", bad, "w = image.width\n", "result = w\n"], supports_grammar=True,
                      supports_prefill=True)
    ans = vistrace.Agent(llm=llm, registry=reg, cache=False).ask(IMAGE, "How wide?")
    assert ans.value == 451 and len(ans.attempts) == 2
    assert ans.attempts[0].stage == "run"


def test_a_failed_line_that_keeps_coming_back_loses_its_members(reg):
    failed = "best = detect(image, 'cat').best()"
    out, llm = _plan(reg, [failed + "\n", failed + "\n", "dets = detect(image, 'cat')\n", "result = dets.count\n"],
                     avoid=[failed])
    third = llm.calls[2].grammar
    assert not accepts(third, failed + "\n") and accepts(third, "x = detect(image, 'cat').largest()\n")
    assert accepts(llm.calls[0].grammar, failed + "\n")
    assert out.text == "dets = detect(image, 'cat')\nresult = dets.count\n"
