"""VPEval family: programs from the published files, transforms, and `vistrace eval vpeval` end to end."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared
from vistrace import check
from vistrace.errors import InputError
from vistrace.evaluate import run_eval
from vistrace.programs.families.vpeval import VPEvalSet
from vistrace.programs.families.vpeval_programs import (
    Task, find_image, load_tasks, skill_task, statements, tasks_from_image_names, with_judge, without_vqa,
)
from vistrace.sandbox import errors


# programs from annotations ------------------------------------------------------------------------

@pytest.mark.parametrize("skill", ["object", "count", "text"])
def test_published_skill_files_build_clean_programs(skill):
    # given VPEval's skill-based file, when every entry is turned into its program
    tasks = load_tasks(shared(f"vpeval/skill_based/{skill}.json"))
    # then each is that skill's module, accepted by the checker
    assert tasks and all(t.skill == skill and t.planner == "vpeval-skill" for t in tasks)
    for t in tasks[:40]:
        assert errors(check(t.program)) == [], t.program


def test_skill_programs_are_built_as_vpeval_builds_them():
    count = skill_task({"id": "count_val_000002", "text": "3 persons",
                        "objects": [{"coconame": "person"}] * 3})
    assert (count.program, count.sub) == ("countEval(objDet(image, 'person'), '==3')", "3")
    spatial = skill_task({"id": "spatial_val_1", "text": "a dog and a cat; cat is left of dog",
                          "objects": [{"coconame": "dog", "relation": None}, {"coconame": "cat", "relation": "left_0"}]})
    assert (spatial.program, spatial.sub) == ("spatialEval(image, 'dog,cat,left')", "left")
    scale = skill_task({"id": "scale_val_1", "text": "x", "objects": [{"coconame": "dog"},
                                                                      {"coconame": "cat", "scale": "bigger"}]})
    assert scale.program == "scaleEval(image, 'dog,cat,bigger')"
    text = skill_task({"id": "text_val_000000", "text": "a sign that reads 'imagine'", "objects": []})
    assert text.program == "textEval(ocr(image), 'imagine')"


@pytest.mark.parametrize("entry", [
    {"id": "count_val_1", "text": "none", "objects": []},
    {"id": "spatial_val_1", "text": "x", "objects": [{"coconame": "dog"}]},
    {"id": "paint_val_1", "text": "x", "objects": [{"coconame": "dog"}]},
    {"text": "no id", "objects": []},
])
def test_malformed_skill_entries_are_rejected_by_name(entry):
    with pytest.raises(InputError, match="skill-based entry"):
        skill_task(entry)


def test_open_ended_programs_load_with_their_ids():
    tasks = load_tasks(shared("vpeval/open_ended/all_evaluation_programs.json"))
    assert len(tasks) == 160 and tasks[0].program.startswith("objectEval(")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"), ('{"a": 3}', "neither a program"), ("[3]", "neither a prompt"),
    ('"text"', "expected VPEval skill-based JSON"),
])
def test_bad_prompt_files_name_the_problem(tmp_path, content, message):
    f = tmp_path / "prompts.json"
    f.write_text(content)
    with pytest.raises(InputError, match=message):
        load_tasks(f)


def test_text_prompt_lists_and_image_names(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("four trucks\n\ntwo cups\n")
    assert [t.prompt for t in load_tasks(f)] == ["four trucks", "two cups"]
    tasks = tasks_from_image_names(shared("t2i_compbench/samples"))
    assert "a horse on the right of a car" in [t.prompt for t in tasks]


def test_find_image_follows_the_published_layouts(tmp_path):
    (tmp_path / "count").mkdir()
    (tmp_path / "count" / "count_val_1.png").write_bytes(b"x")
    (tmp_path / "a dog_000007.png").write_bytes(b"x")
    assert find_image(tmp_path, Task("count_val_1", "2 dogs", skill="count")).name == "count_val_1.png"
    assert find_image(tmp_path, Task("00001", "a dog")).name == "a dog_000007.png"
    with pytest.raises(InputError, match="no image for item 'x'"):
        find_image(tmp_path, Task("x", "a cat"))


# transforms ----------------------------------------------------------------------------------------

DOGS = ("objectEval(image, 'dog');vqa(image, 'what animals are in the image?', 'dogs,cats,birds,fish', 'dogs');"
        "countEval(objDet(image, 'dog'), '==10');vqa(image, 'how many dogs are in the image?', '1,2,3', '3')")


def test_without_vqa_keeps_the_other_modules_in_order():
    program, skipped = without_vqa(DOGS)
    assert program == "objectEval(image, 'dog');countEval(objDet(image, 'dog'), '==10')"
    assert [s.module for s in skipped] == ["vqa", "vqa"]
    assert without_vqa("objectEval(image, 'dog')") == ("objectEval(image, 'dog')", [])


def test_with_judge_adds_the_judge_to_spatial_modules_only():
    src = "objectEval(image, 'cat');spatialEval(image, 'dog,cat,left')"
    assert with_judge(src, "geneval") == "objectEval(image, 'cat');spatialEval(image, 'dog,cat,left', judge='geneval')"
    assert with_judge(src, "vpeval") == src
    assert errors(check(with_judge(src, "geneval"))) == []
    assert [s.module for s in statements(src)] == ["objectEval", "spatialEval"]


# end to end ----------------------------------------------------------------------------------------

def _dogs_prompts(tmp_path, **extra):
    f = tmp_path / "dogs.json"
    f.write_text(json.dumps([{"id": "dogs", "prompt": "an image of ten dogs", "image": "dogs.jpg", **extra}]))
    return f


@pytest.mark.slow
def test_published_ten_dogs_example_scores_half_with_vqa_off(tmp_path):
    # given VPEval's published example: dogs.jpg, "an image of ten dogs", VQA off
    images = shared("vpeval/examples/dogs.jpg").parent
    tasks = load_tasks(_dogs_prompts(tmp_path, program=DOGS))
    out = tmp_path / "out"
    # when evaluated
    summary = run_eval(VPEvalSet(tasks, images), out, command="test", progress=False)
    # then objectEval passes, countEval fails, the vqa modules are skipped: score 0.5 as published
    assert summary.metrics["score"] == 0.5
    result = json.loads((out / "items" / "dogs" / "result.json").read_text())
    verdicts = [(m["module"], m["passed"], m["skipped"]) for m in result["modules"]]
    assert verdicts == [("objectEval", True, False), ("countEval", False, False), ("vqa", False, True),
                        ("vqa", False, True)]
    # the detected count is ours (CenterNet), published: 3 with GroundingDINO
    assert result["modules"][1]["sentence"] == 'There are 3 "dog" objects, not 10.'
    # the output contract: summary.json, report.html, one folder per item with its trace and overlays
    data = json.loads((out / "summary.json").read_text())
    assert {"set", "items", "metrics", "errors", "command"} <= set(data) and data["items"] == 1
    assert (out / "items" / "dogs" / "trace" / "trace.json").is_file()
    assert (out / "items" / "dogs" / result["modules"][1]["overlay"]).is_file()
    html = (out / "report.html").read_text()
    assert "There are 3 &#34;dog&#34; objects, not 10." in html and "items/dogs/trace/report.html" in html


@pytest.mark.slow
def test_errored_modules_count_as_failed_and_are_reported_beside_vpevals_number(tmp_path):
    # given a program whose depth module cannot run offline (no monocular depth weights)
    images = shared("vpeval/examples/dogs.jpg").parent
    program = "objectEval(image, 'dog');spatialEval(image, 'dog,dog,front')"
    tasks = load_tasks(_dogs_prompts(tmp_path, program=program))
    summary = run_eval(VPEvalSet(tasks, images), tmp_path / "out", progress=False)
    # then it counts as failed (0.5), VPEval's dropping number says 1.0, and the error is listed
    assert summary.metrics["score"] == 0.5
    assert summary.metrics["score_errors_dropped"] == 1.0
    assert summary.metrics["modules_errored"] == 1
    result = json.loads((tmp_path / "out" / "items" / "dogs" / "result.json").read_text())
    assert "depth" in result["modules"][1]["error"]


@pytest.mark.slow
def test_evaluation_resumes_and_keeps_scored_items(tmp_path):
    images = shared("vpeval/examples/dogs.jpg").parent
    tasks = load_tasks(_dogs_prompts(tmp_path))
    out = tmp_path / "out"
    first = run_eval(VPEvalSet(tasks, images), out, progress=False)
    stamp = (out / "items" / "dogs" / "result.json").stat().st_mtime_ns
    second = run_eval(VPEvalSet(tasks, images), out, progress=False)
    assert (first.resumed, second.resumed) == (0, 1)
    assert second.metrics == first.metrics
    assert (out / "items" / "dogs" / "result.json").stat().st_mtime_ns == stamp


def test_missing_images_are_item_errors_not_crashes(tmp_path):
    tasks = [Task("a", "a photo of a cat"), Task("b", "a man riding a horse while the sun sets over the hills")]
    summary = run_eval(VPEvalSet(tasks, tmp_path), tmp_path / "out", progress=False)
    assert summary.errors == 2 and summary.metrics["score"] == 0.0
    results = {json.loads(p.read_text())["id"]: json.loads(p.read_text()) for p in (tmp_path / "out").glob("items/*/result.json")}
    assert "no image for item 'a'" in results["a"]["error"]
    assert "fits no template" in results["b"]["error"]


@pytest.mark.parametrize("kwargs, message", [({"judge": "t2i"}, "--judge must be one of"), ({}, "no such folder")])
def test_bad_settings_are_rejected(tmp_path, kwargs, message):
    images = tmp_path if kwargs else tmp_path / "missing"
    with pytest.raises(InputError, match=message):
        VPEvalSet([Task("a", "a cat")], images, **kwargs)


# the LLM planner ------------------------------------------------------------------------------------

def test_planner_few_shots_come_from_the_library():
    from vistrace.programs.families.vpeval_planner import VPEVAL_GRAMMAR, library_shots
    from vistrace.agent.gbnf import accepts

    shots = library_shots()
    assert {s.prompt for s in shots} >= {"an image of ten dogs"}
    for s in shots:
        assert errors(check(s.program)) == [], s.program
        assert accepts(VPEVAL_GRAMMAR, s.program), s.program


def test_planner_uses_the_rules_first_and_the_llm_for_the_rest():
    from tests.agent.scripted_llm import ScriptedLLM
    from vistrace.programs.families.vpeval_planner import VPEvalPlanner

    llm = ScriptedLLM(["objectEval(image, 'giraffe');countEval(objDet(image, 'giraffe'), '==5')", "objectEval(image"])
    planner = VPEvalPlanner(llm)
    assert planner(Task("a", "four trucks")).planner == "rules" and not llm.calls
    planned = planner(Task("b", "five giraffes roamed the safari"))
    assert planned.planner == "llm" and planned.program.startswith("objectEval(image, 'giraffe')")
    assert llm.calls[0].grammar is not None and "Prompt: five giraffes" in llm.calls[0].last_user
    from vistrace.errors import ProgramError

    with pytest.raises(ProgramError, match="was rejected"):
        planner(Task("c", "seven pigs snorted and played in the mud"))


@pytest.mark.slow
def test_planner_with_the_real_local_model_writes_a_checked_program():
    from vistrace.programs.families.vpeval_planner import VPEvalPlanner

    planned = VPEvalPlanner("local")(Task("a", "five giraffes roamed the safari"))
    assert planned.planner == "llm"
    assert errors(check(planned.program)) == []
    assert "giraffe" in planned.program


def test_an_item_that_raises_a_bug_is_recorded_and_the_evaluation_goes_on(tmp_path):
    from vistrace.evaluate import EvalItem, ItemResult

    class Flaky:
        name = "flaky"

        def items(self):
            return [EvalItem("a", {}), EvalItem("b", {})]

        def evaluate(self, item, folder):
            if item.id == "a":
                raise KeyError("boom")
            return ItemResult(item.id, score=1.0)

        def metrics(self, results):
            return {"score": sum(r.score for r in results) / len(results)}

        def config(self):
            return {}

    summary = run_eval(Flaky(), tmp_path / "out", progress=False)
    assert summary.errors == 1 and summary.metrics["score"] == 0.5
    assert "KeyError" in (tmp_path / "out" / "items" / "a" / "error.txt").read_text()


# worker processes ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_worker_processes_give_the_same_results(tmp_path):
    import functools

    from vistrace.cli_eval import build_vpeval

    kwargs = {"prompts": None, "images": str(shared("t2i_compbench/samples")), "judge": "vpeval", "vqa": False,
              "llm": None, "experts": None}
    one = run_eval(build_vpeval(**kwargs), tmp_path / "one", progress=False)
    two = run_eval(build_vpeval(**kwargs), tmp_path / "two", progress=False, workers=2,
                   factory=functools.partial(build_vpeval, **kwargs))
    assert two.metrics == one.metrics and two.items == one.items == 4
    for f in (tmp_path / "one" / "items").glob("*/result.json"):
        mine = json.loads(f.read_text())
        theirs = json.loads((tmp_path / "two" / "items" / f.parent.name / "result.json").read_text())
        assert [m["passed"] for m in mine["modules"]] == [m["passed"] for m in theirs["modules"]]


def test_workers_need_a_factory(tmp_path):
    with pytest.raises(InputError, match="needs a factory"):
        run_eval(VPEvalSet([Task("a", "a cat")], tmp_path), tmp_path / "out", progress=False, workers=2)
    with pytest.raises(InputError, match="at least 1"):
        run_eval(VPEvalSet([Task("a", "a cat")], tmp_path), tmp_path / "out", progress=False, workers=0)
