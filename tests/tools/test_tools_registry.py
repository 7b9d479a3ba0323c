"""The built-in registry: every tool declared fully, aliases bind like the published program styles."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vistrace.errors import ToolArgumentError, VistraceError
from vistrace.tools import Registry, default_registry
from vistrace.tools.builtin import VISPROG_ALIASES, VPEVAL_ALIASES, register_builtin
from vistrace.values import Box, Detections, TextLine, TextLines

EXPECTED_TOOLS = {
    "crop", "zoom", "crop_left_of", "crop_right_of", "crop_above", "crop_below", "spatial", "scale",
    "detect", "ocr", "ask", "caption", "depth", "region", "loc", "object_eval", "count_eval",
    "spatial_eval", "scale_eval", "text_eval", "vqa_eval", "count", "box", "detect_faces", "pose", "classify", "find_text", "segment", "stereo_depth",
    "detections", "generate", "layout_sketch",
    "depth_for", "point_cloud", "measure_points", "choose_mesher", "mesh", "export_mesh", "render_mesh",
    "plan_objects", "plan_layout",
    "locate",
}
EXPECTED_ALIASES = {
    "LOC": "loc", "COUNT": "count", "CROP": "crop", "CROP_LEFTOF": "crop_left_of", "CROP_RIGHTOF": "crop_right_of",
    "CROP_ABOVE": "crop_above", "CROP_BELOW": "crop_below", "VQA": "ask",
    "objDet": "detect", "objectEval": "object_eval", "countEval": "count_eval", "spatialEval": "spatial_eval",
    "scaleEval": "scale_eval", "textEval": "text_eval", "vqa": "vqa_eval",
}


def test_every_builtin_tool_is_registered(bare_registry):
    assert set(bare_registry.names()) == EXPECTED_TOOLS


@pytest.mark.parametrize("alias, tool", sorted(EXPECTED_ALIASES.items()))
def test_every_alias_resolves(bare_registry, alias, tool):
    found, a = bare_registry.resolve(alias)
    assert found.name == tool
    assert a.style == ("visprog" if alias.isupper() else "vpeval")
    assert bare_registry.signature(alias).tool == tool


def test_alias_tables_match_the_expected_names():
    assert {a[0]: a[1] for a in VISPROG_ALIASES + VPEVAL_ALIASES} == EXPECTED_ALIASES


@pytest.mark.parametrize("name", sorted(EXPECTED_TOOLS))
def test_each_tool_is_fully_declared(bare_registry, name):
    t = bare_registry.get(name)
    # a one-line planner description and a doc for every parameter
    assert t.summary and not t.summary.endswith(":")
    assert all(p.doc for p in t.params), [p.name for p in t.params if not p.doc]
    # derived views
    schema = t.json_schema()
    json.dumps(schema)
    assert schema["name"] == name and schema["description"] == t.summary
    assert set(schema["parameters"]["properties"]) == {p.name for p in t.params}
    assert t.stub().startswith(f"def {name}(")
    assert t.summary in t.help()
    assert ("backends: none installed" in t.help()) == t.expert


def test_expert_flags(bare_registry):
    experts = {t.name for t in bare_registry.tools() if t.expert}
    assert experts == {"detect", "ocr", "ask", "caption", "depth", "detect_faces", "pose", "classify", "segment", "generate",
                       "plan_objects", "plan_layout", "locate"}


def test_validation_message_names_argument_tool_and_types(bare_registry, coco_image):
    with pytest.raises(ToolArgumentError) as info:
        bare_registry.get("detect").validate({"image": coco_image, "query": "cat", "threshold": "0.5"})
    assert info.value.message == "argument 'threshold' of detect expects float, got str"


def test_validation_reports_a_missing_argument(bare_registry, coco_image):
    with pytest.raises(ToolArgumentError) as info:
        bare_registry.get("crop").validate({"image": coco_image})
    assert info.value.message == "missing required argument 'box'"


def test_validation_of_a_union_names_the_argument_once(bare_registry, coco_image):
    with pytest.raises(ToolArgumentError) as info:
        bare_registry.get("crop").validate({"image": coco_image, "box": "dog"})
    assert info.value.message == "argument 'box' of crop expects Box | Detections, got str"


# alias binding ----------------------------------------------------------------------------------

def test_objdet_binds_positionally(bare_registry):
    bound, problems = bare_registry.signature("objDet").bind(["IMG", "dog"], {})
    assert problems == [] and bound == {"image": "IMG", "query": "dog"}


def test_vpeval_calls_bind_positionally(bare_registry):
    sig = bare_registry.signature
    assert sig("countEval").bind(["DETS", "==3"], {}) == ({"objects": "DETS", "target": "==3"}, [])
    assert sig("spatialEval").bind(["IMG", "dog,cat,left"], {})[0] == {"image": "IMG", "objects_relation": "dog,cat,left"}
    assert sig("textEval").bind(["LINES", "hello"], {})[0] == {"text": "LINES", "target": "hello"}
    assert sig("vqa").bind(["IMG", "q?", "yes,no", "yes"], {})[0] == {
        "image": "IMG", "question": "q?", "choices": "yes,no", "target": "yes"}


def test_visprog_crop_presets_expand_and_hides_it(bare_registry):
    sig = bare_registry.signature("CROP")
    bound, problems = sig.bind([], {"image": "IMG", "box": "BOX0"})
    assert problems == [] and bound == {"image": "IMG", "box": "BOX0", "expand": 1.5}
    assert "expand" not in sig.stub()
    _, problems = sig.bind([], {"image": "IMG", "box": "BOX0", "expand": 2.0})
    assert problems and "has no argument 'expand'" in problems[0]


def test_visprog_crop_runs_with_the_1_5_preset(bare_registry, make_image):
    img = make_image(640, 480)
    sig = bare_registry.signature("CROP")
    bound, _ = sig.bind([], {"image": img, "box": Detections([Box(100, 100, 200, 160)])})
    out = bare_registry.get("CROP").invoke(bound, bare_registry)[0]
    assert out.region().xyxy == (75, 85, 225, 175)


def test_visprog_count_renames_box(bare_registry, remotes):
    sig = bare_registry.signature("COUNT")
    bound, problems = sig.bind([], {"box": remotes})
    assert problems == []
    assert bare_registry.get("COUNT").invoke(bound, bare_registry)[0] == 2


def test_visprog_vqa_and_loc_keywords(bare_registry):
    assert bare_registry.signature("VQA").bind([], {"image": "I", "question": "q?"}) == (
        {"image": "I", "question": "q?"}, [])
    assert bare_registry.signature("LOC").bind([], {"image": "I", "object": "dog"}) == (
        {"image": "I", "object": "dog"}, [])


@pytest.mark.parametrize("objects, n", [
    (Detections([Box(0, 0, 1, 1), Box(1, 1, 2, 2)]), 2),
    (TextLines([TextLine("a", Box(0, 0, 1, 1))]), 1),
    ([1, 2, 3], 3),
    (Detections([]), 0),
])
def test_count_counts_values(bare_registry, objects, n):
    assert bare_registry.get("count")(bare_registry, objects=objects) == n


@pytest.mark.parametrize("bad", ["abc", 3, None])
def test_count_rejects_other_types(bare_registry, bad):
    with pytest.raises(ToolArgumentError) as info:
        bare_registry.get("count")(bare_registry, objects=bad)
    assert info.value.message == (
        f"argument 'objects' of count expects Detections | TextLines | list, got {type(bad).__name__}")


# registries -------------------------------------------------------------------------------------

def test_registering_builtins_twice_is_an_error(bare_registry):
    with pytest.raises(VistraceError, match="already registered"):
        register_builtin(bare_registry)


def test_backends_do_not_leak_between_registries(gt_registry):
    other = Registry()
    register_builtin(other)
    assert gt_registry.get("detect").backends
    assert other.get("detect").backends == []


def test_default_registry_has_the_builtins():
    reg = default_registry()
    assert EXPECTED_TOOLS <= set(reg.names())
    assert set(EXPECTED_ALIASES) <= set(reg.names(include_aliases=True))


def test_importing_vistrace_tools_stays_light():
    code = ("import sys, vistrace.tools; "
            "print(sorted(m for m in ('numpy', 'PIL', 'pydantic', 'vistrace.tools.builtin') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
