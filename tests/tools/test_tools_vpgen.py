"""VPGen's planning tools: the objects-and-counts and layout forms, the grammars, the LLM backends."""

from __future__ import annotations

import pytest

import vistrace
from vistrace.agent.gbnf import accepts, parse_gbnf
from vistrace.errors import ToolError
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.tools.builtin.vpgen import box_format, check_layout, parse_layout, parse_objects
from vistrace.tools.experts.vpgen_llm import LayoutPlanner, ObjectPlanner, layout_grammar, objects_grammar


@pytest.mark.parametrize("text, objects", [
    ("dog (2) cat (1)", [("dog", 2), ("cat", 1)]),
    ("Dog(2), wine  glass (1)", [("dog", 2), ("wine glass", 1)]),
    ("dog (1) dog (2)", [("dog", 3)]),
])
def test_parse_objects(text, objects):
    assert parse_objects(text) == objects


@pytest.mark.parametrize("text, message", [("", "expected objects"), ("a dog", "expected objects"),
                                           ("dog (0)", "counts must be"), ("dog (40)", "counts must be")])
def test_parse_objects_rejects(text, message):
    with pytest.raises(ToolError, match=message):
        parse_objects(text)


@pytest.mark.parametrize("text, form, first", [
    ("dog (10,20,50,60) cat (50,20,90,70)", "bins", (51.2, 102.4, 256.0, 307.2)),
    ("dog (0.1,0.2,0.5,0.6) cat (0.5,0.2,0.9,0.7)", "normalised", (51.2, 102.4, 256.0, 307.2)),
    ("dog (51,102,256,307) cat (256,102,461,358)", "pixels", (51.0, 102.0, 256.0, 307.0)),
    ("dog [50,60,10,20] cat (1,1,2,2)", "bins", (51.2, 102.4, 256.0, 307.2)),  # corners ordered
])
def test_parse_layout_reads_the_three_box_forms(text, form, first):
    layout = parse_layout(text, 512, 512)
    assert layout.query == f"layout ({form})"
    b = layout[0]
    assert (b.label, (b.x1, b.y1, b.x2, b.y2)) == ("dog", first)
    assert [x.label for x in layout] == ["dog", "cat"]


def test_box_format_decides_for_the_whole_layout():
    assert box_format([10, 20, 50, 60]) == "bins"
    assert box_format([0.1, 0.2, 0.5, 0.6]) == "normalised"
    assert box_format([0, 0, 1, 1]) == "bins"
    assert box_format([10, 20, 300, 60]) == "pixels"


@pytest.mark.parametrize("text, message", [("no boxes here", "expected a layout"),
                                           ("dog (10,10,10,50)", "has no area")])
def test_parse_layout_rejects(text, message):
    with pytest.raises(ToolError, match=message):
        parse_layout(text, 512, 512)


def test_check_layout_needs_exactly_the_planned_instances():
    layout = parse_layout("dog (10,20,50,60) dog (50,20,90,70)", 512, 512)
    check_layout(layout, [("dog", 2)])
    with pytest.raises(ToolError, match="planned dog \\(2\\) cat \\(1\\), layout has dog \\(2\\)"):
        check_layout(layout, [("dog", 2), ("cat", 1)])


def test_grammars_accept_exactly_the_plan():
    g = objects_grammar()
    parse_gbnf(g)
    assert accepts(g, "dog (2) cat (1)") and accepts(g, "wine glass (1)")
    assert not accepts(g, "dog 2") and not accepts(g, "dog (0)")
    lg = layout_grammar([("dog", 2), ("cat", 1)])
    assert accepts(lg, "dog (1,2,30,40) dog (50,2,90,40) cat (5,50,60,99)")
    assert not accepts(lg, "dog (1,2,30,40) cat (5,50,60,99)")        # a dog missing
    assert not accepts(lg, "dog (1,2,30,40) dog (50,2,90,40) cat (5,50,60,100)")  # bin 100


def _registry_with(llm) -> Registry:
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(ObjectPlanner(llm))
    reg.add_backend(LayoutPlanner(llm))
    return reg


def test_plan_tools_with_a_scripted_llm_check_the_layout_against_the_plan():
    from tests.agent.scripted_llm import ScriptedLLM

    llm = ScriptedLLM(["dog (2) cat (1)", "dog (5,40,30,90) dog (35,40,60,90) cat (65,45,95,90)"])
    run = vistrace.run("o = plan_objects(prompt)\nresult = plan_layout(prompt, o)", registry=_registry_with(llm),
                       cache=False, prompt="two dogs on the left of a cat")
    assert run.ok, run.error
    assert [b.label for b in run.value] == ["dog", "dog", "cat"]
    assert run.trace.steps[0].output == "'dog (2) cat (1)'"
    # a layout that breaks the plan is drawn again twice, then rejected by the tool
    bad = ScriptedLLM(["dog (2)"] + ["dog (5,40,30,90)"] * 3)
    run = vistrace.run("o = plan_objects(prompt)\nresult = plan_layout(prompt, o)", registry=_registry_with(bad),
                       cache=False, prompt="two dogs")
    assert not run.ok and "does not match the planned objects" in str(run.error)
    assert len(bad.calls) == 4


def test_stacked_boxes_are_drawn_again():
    from tests.agent.scripted_llm import ScriptedLLM

    llm = ScriptedLLM(["dog (1) cat (1)", "dog (5,40,30,90) cat (5,40,30,90)", "dog (5,40,30,90) cat (60,40,90,90)"])
    run = vistrace.run("o = plan_objects(prompt)\nresult = plan_layout(prompt, o)", registry=_registry_with(llm),
                       cache=False, prompt="a dog left of a cat")
    assert run.ok and run.value[1].x1 > 300


def test_a_box_without_area_is_drawn_again():
    from tests.agent.scripted_llm import ScriptedLLM

    llm = ScriptedLLM(["key (1)", "key (1,10,10,10)", "key (10,10,40,30)"])
    run = vistrace.run("o = plan_objects(prompt)\nresult = plan_layout(prompt, o)", registry=_registry_with(llm),
                       cache=False, prompt="one key")
    assert run.ok, run.error
    assert len(run.value) == 1 and run.value[0].width > 0


@pytest.mark.slow
def test_plan_tools_with_the_real_local_model():
    run = vistrace.run("o = plan_objects(prompt)\nresult = plan_layout(prompt, o)", cache=False,
                       prompt="three apples on a table")
    assert run.ok, run.error
    assert run.trace.steps[0].backend == "vpgen_llm" and "qwen" in run.trace.steps[0].model
    objects = dict(parse_objects(run.recorder.values[1]))
    assert objects.get("apple") == 3
    assert sum(1 for b in run.value if b.label == "apple") == 3
