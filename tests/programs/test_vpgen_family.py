"""VPGen loop: prompt -> objects -> layout -> (sketch) -> VPEval on the layout boxes, offline."""

from __future__ import annotations

import json

import pytest

from tests.agent.scripted_llm import ScriptedLLM
from vistrace.errors import InputError
from vistrace.evaluate import run_eval
from vistrace.programs.families.vpeval_programs import Task
from vistrace.programs.families.vpgen import LayoutDetector, VPGenSet, layout_checkable
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.tools.builtin.vpgen import parse_layout
from vistrace.tools.experts.vpgen_llm import LayoutPlanner, ObjectPlanner
from vistrace.values import Image


def _registry(replies) -> Registry:
    llm = ScriptedLLM(list(replies))
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(ObjectPlanner(llm))
    reg.add_backend(LayoutPlanner(llm))
    return reg


def _results(out):
    return {json.loads(p.read_text())["id"]: json.loads(p.read_text()) for p in out.glob("items/*/result.json")}


@pytest.mark.parametrize("layout, score, spatial", [
    ("dog (5,40,30,90) dog (35,40,60,90) cat (65,45,95,90)", 1.0, True),   # the dogs left of the cat
    ("dog (65,40,80,90) dog (82,40,97,90) cat (5,45,40,90)", 0.75, False),  # the cat on the left: spatial fails
])
def test_vpgen_loop_judges_the_layout_offline(tmp_path, layout, score, spatial):
    # given a plan for "two dogs on the left of a cat" and no generator
    reg = _registry(["dog (2) cat (1)", layout])
    evalset = VPGenSet([Task("a", "two dogs on the left of a cat")], registry=reg, cache=False)
    # when the loop runs
    summary = run_eval(evalset, tmp_path / "out", progress=False)
    result = _results(tmp_path / "out")["a"]
    # then the sketch is judged on the layout boxes: objects, the count and the relation
    assert summary.config["generator"] == "sketch" and "layout boxes" in summary.config["judged"]
    assert result["score"] == score
    assert [m["module"] for m in result["modules"]] == ["objectEval", "countEval", "objectEval", "spatialEval"]
    assert result["modules"][3]["passed"] is spatial
    assert (tmp_path / "out" / "items" / "a" / "generate" / "trace.json").is_file()
    assert (tmp_path / "out" / "items" / "a" / "check" / "report.html").is_file()


def test_a_layout_that_breaks_the_plan_is_an_item_error(tmp_path):
    reg = _registry(["dog (2)"] + ["dog (5,40,30,90)"] * 3)  # drawn three times, then rejected
    summary = run_eval(VPGenSet([Task("a", "two dogs")], registry=reg, cache=False), tmp_path / "out", progress=False)
    assert summary.errors == 1 and "does not match the planned objects" in _results(tmp_path / "out")["a"]["error"]


def test_layout_checkable_skips_text_vqa_and_depth():
    program = ("objectEval(image, 'dog');textEval(ocr(image), 'stop');vqa(image, 'q?', 'a,b', 'a');"
               "spatialEval(image, 'cat,dog,front');spatialEval(image, 'cat,dog,left')")
    kept, skipped = layout_checkable(program)
    assert kept == "objectEval(image, 'dog');spatialEval(image, 'cat,dog,left')"
    assert [s.module for s in skipped] == ["textEval", "vqa", "spatialEval"]


def test_layout_detector_answers_by_singular_name():
    layout = parse_layout("dog (5,40,30,90) cat (65,45,95,90)", 512, 512)
    from PIL import Image as PILImage

    canvas = Image(PILImage.new("RGB", (512, 512)))
    found = LayoutDetector(layout).run(canvas, ["dogs"])
    assert [b.label for b in found] == ["dogs"] and len(found) == 1


def test_unknown_generator_is_rejected():
    with pytest.raises(InputError, match="--generator must be one of"):
        VPGenSet([Task("a", "a dog")], generator="dalle")
