"""Given the Python API, when programs run, then values, traces, run folders, replays and the cache behave."""

from __future__ import annotations

import json

import pytest

import vistrace
from tests.tools.conftest import COCO_DIR, CocoGroundTruthDetector, load_coco
from vistrace.errors import InputError, ProgramError
from vistrace.runfolder import replay
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.trace import ResultCache
from vistrace.values import Detections, Image

CATS = '''
def cats(image: Image, objects: Detections) -> str:
    """Which cat is on the left?"""
    cats = objects.label("cat")
    left = cats.leftmost()
    right = cats.rightmost()
    crop_left = crop(image, left)
    return f"{count(cats)} cats, left of: {spatial(left, right, 'left of', judge='geneval')}"
'''


@pytest.fixture
def coco_inputs():
    from vistrace.inputs import load_value_file

    load_coco()
    return {"image": COCO_DIR / "000000039769.png",
            "objects": load_value_file(COCO_DIR / "000000039769_annotations.json")}


@pytest.fixture
def gt_registry() -> Registry:
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(CocoGroundTruthDetector())
    return reg


def test_run_returns_value_and_trace(coco_inputs):
    run = vistrace.run(CATS, cache=False, **coco_inputs)
    assert run.ok and run.value == "2 cats, left of: True"
    assert [s.call for s in run.trace.steps] == ["crop", "count", "spatial"]
    step = run.trace.steps[0]
    assert step.line == 7 and step.target == "crop_left" and "crop(image, left)" in step.source
    assert step.backend == "builtin" and step.error is None and step.duration_s >= 0
    assert isinstance(run.inputs["image"], Image)  # a Path input became an Image


def test_save_writes_run_folder_and_replay_is_identical(tmp_path, coco_inputs):
    run = vistrace.run(CATS, cache=False, **coco_inputs)
    folder = run.save(tmp_path / "run")
    for name in ("trace.json", "report.html", "program.vp", "inputs/values.zip", "inputs/image.png"):
        assert (folder / name).is_file(), name
    assert any((folder / "artifacts").glob("step*.png"))
    saved = json.loads((folder / "trace.json").read_text())
    assert saved["result"] == "2 cats, left of: True"
    result = replay(folder, cache=False)
    assert result.identical, result.differences


def test_replay_reports_a_changed_trace(tmp_path, coco_inputs):
    folder = vistrace.run(CATS, cache=False, **coco_inputs).save(tmp_path / "run")
    (folder / "program.vp").write_text(CATS.replace("'left of'", "'right of'"))
    result = replay(folder, cache=False)
    assert not result.identical
    assert any("result" in d for d in result.differences)


def test_runtime_error_keeps_trace_and_location(coco_inputs):
    program = CATS.replace('objects.label("cat")', 'objects.label("zebra")')
    run = vistrace.run(program, cache=False, **coco_inputs)
    assert not run.ok
    assert run.error.where.line == 5  # cats.leftmost() on no zebras
    assert "no detections" in run.error.message
    assert run.trace.error is not None and run.trace.error.line == 5


def test_rejected_program_raises_with_every_problem():
    with pytest.raises(ProgramError) as info:
        vistrace.run("import os\nx = objDetect(image, 'dog')", image=None)
    assert [p.line for p in info.value.problems] == [1, 2]
    assert info.value.problems[1].hint == "did you mean 'objDet'?"


def test_check_returns_problems_without_raising():
    assert vistrace.check("x = 1") == []
    problems = vistrace.check("detect(image, 'dog', threshold='high')")
    assert [p.message for p in problems] == ["argument 'threshold' of detect expects float, got str"]
    (syntax,) = vistrace.check("x = (")
    assert syntax.message.startswith("syntax error")


@pytest.mark.parametrize("bad, message", [
    ("missing.png", "image file not found"),
    ("truncated", "cannot read image"),
    ("not_an_image", "cannot read image"),
])
def test_bad_image_inputs_name_the_file(tmp_path, bad, message):
    src = COCO_DIR / "000000039769.png"
    if bad == "truncated":
        load_coco()
        path = tmp_path / "truncated.png"
        path.write_bytes(src.read_bytes()[:5000])
    elif bad == "not_an_image":
        path = tmp_path / "notes.png"
        path.write_text("hello")
    else:
        path = tmp_path / bad
    with pytest.raises(InputError, match=message) as info:
        vistrace.run("def f(image: Image) -> int:\n    return image.width", image=path)
    assert str(path) in str(info.value)


def test_expert_results_are_cached_by_content(tmp_path, gt_registry):
    load_coco()
    cache = ResultCache(tmp_path / "cache")
    program = "dets = objDet(image, 'cat')\nresult = count(dets)"
    image = COCO_DIR / "000000039769.png"
    first = vistrace.run(program, registry=gt_registry, cache=cache, image=image)
    second = vistrace.run(program, registry=gt_registry, cache=cache, image=image)
    assert first.value == second.value == 2
    assert [s.cache_hit for s in first.trace.steps] == [False, False]
    assert [s.cache_hit for s in second.trace.steps] == [True, False]
    assert second.trace.steps[0].backend == "coco-ground-truth-test-double"
    assert first.trace.comparable() == second.trace.comparable()


def test_vpeval_program_scores_and_reports_missing_experts(coco_inputs):
    # no VQA backend ships offline: that module fails visibly, counts as failed, and the rest still run
    run = vistrace.run("vqa(image, 'is there a cat?', 'yes,no', 'yes');countEval(objects.label('cat'), '==2')",
                       cache=False, **coco_inputs)
    assert run.ok
    assert run.value["total"] == 2 and run.value["passed"] == 1 and run.value["score"] == 0.5
    failed = run.value["modules"][0]
    assert not failed["passed"] and "no backend" in failed["error"]
    assert "VPEval score 0.50 (1/2 modules passed)" in run.describe()
    assert run.trace.steps[0].error.type == "BackendUnavailable"


def test_vpeval_with_a_detector_matches_the_published_semantics(gt_registry, coco_inputs):
    run = vistrace.run("objectEval(image, 'cat');countEval(objDet(image, 'cat'), '==2');"
                       "spatialEval(image, 'cat,remote,above')", registry=gt_registry, cache=False, **coco_inputs)
    assert [m["passed"] for m in run.value["modules"]] == [True, True, True]


def test_parallel_run_gives_the_same_trace(coco_inputs):
    seq = vistrace.run(CATS, cache=False, **coco_inputs)
    par = vistrace.run(CATS, cache=False, parallel=4, **coco_inputs)
    assert par.value == seq.value
    assert par.trace.comparable() == seq.trace.comparable()


def test_notebook_and_terminal_views(coco_inputs):
    run = vistrace.run(CATS, cache=False, **coco_inputs)
    html = run._repr_html_()
    assert "crop(image, left)" in html and "step-1" in html
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(run)
    assert "spatial" in console.export_text()
    assert "step 1" in run.observation()


def test_detections_inputs_load_from_coco_annotations(coco_inputs):
    objects = coco_inputs["objects"]
    assert isinstance(objects, Detections) and objects.count == 6
    assert sorted(set(objects.labels)) == ["bed", "cat", "couch", "remote"]


def test_on_step_reports_each_step_while_the_program_runs(tmp_path):
    """Given a program whose three steps run and whose last line then fails, when it runs with on_step, then
    each step is reported once, in order, as it finishes, and the reports are the trace's steps."""
    seen = []

    def on_step(rec):
        seen.append((rec.id, rec.tool, rec.error is not None, len(seen)))

    img = Image.from_array(__import__("numpy").zeros((20, 30, 3), dtype="uint8"))
    program = "b = box(0, 0, 10, 10)\nc = crop(image, b)\nresult = crop(image, box(0, 0, 99, 99)).width / 0"
    run = vistrace.run(program, cache=False, on_step=on_step, image=img)
    assert run.error is not None
    assert [s[:3] for s in seen] == [(s.id, s.tool, s.error is not None) for s in run.trace.steps]
    assert [s[0] for s in seen] == [1, 2, 3, 4] and seen[0][1] == "box"


def test_an_on_step_that_fails_does_not_change_the_run():
    def broken(rec):
        raise RuntimeError("observer broke")

    img = Image.from_array(__import__("numpy").zeros((20, 30, 3), dtype="uint8"))
    with pytest.warns(RuntimeWarning, match="on_step callback failed on step 1"):
        run = vistrace.run("result = box(0, 0, 10, 10).width", cache=False, on_step=broken, image=img)
    assert run.ok and run.value == 10
