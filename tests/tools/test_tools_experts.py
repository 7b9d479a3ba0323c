"""Expert tools (detect, ocr, ask, caption, depth) without and with (test-double) backends; region/LOC."""

from __future__ import annotations

import numpy as np
import pytest

from vistrace.errors import BackendUnavailable, ToolArgumentError, ToolError
from vistrace.tools import Availability, Backend
from vistrace.tools.builtin.experts import detect, region_box
from vistrace.tools.builtin.image_ops import crop
from vistrace.values import Box, DepthMap, Detections, TextLine, TextLines


def call(reg, tool_name, /, **args):
    return reg.get(tool_name).invoke(args, reg)[0]


@pytest.mark.parametrize("name, extra", [
    ("detect", {"query": "cat"}),
    ("objDet", {"query": "cat"}),
    ("ocr", {}),
    ("ask", {"question": "What is this?"}),
    ("VQA", {"question": "What is this?"}),
    ("caption", {}),
    ("depth", {}),
])
def test_experts_without_a_backend_raise_backend_unavailable(bare_registry, coco_image, name, extra):
    # given a registry with the built-in tools and no backend installed
    tool = bare_registry.get(name)
    assert tool.expert
    # when the tool is called, then the error names the tool and how to get a backend
    with pytest.raises(BackendUnavailable) as info:
        call(bare_registry, name, image=coco_image, **extra)
    assert f"tool '{tool.name}' has no backend installed" in info.value.message
    assert "vistrace tools" in (info.value.fix or "")


def test_module_level_expert_has_no_backend_either(coco_image):
    with pytest.raises(BackendUnavailable, match="tool 'detect' has no backend installed"):
        detect(image=coco_image, query="cat")


def test_detect_in_a_crop_maps_boxes_back_to_root(gt_registry, coco_image, cats):
    # given the right half of the COCO image
    right_half = crop(image=coco_image, box=Box(320, 0, 640, 480))
    # when the detector (ground-truth double, answering in the crop's pixels) looks for cats
    dets = call(gt_registry, "detect", image=right_half, query="cat")
    # then only the right cat is found, at its root-image position
    assert len(dets) == 1
    assert dets[0].xyxy == pytest.approx(cats[1].xyxy)
    assert dets.image_size == (640, 480)
    assert dets.query == "cat"


def test_detect_in_a_zoomed_crop_maps_boxes_back_to_root(gt_registry, coco_image, remotes):
    # a crop resized 2x: its pixels are not root pixels, the boxes still come back in root pixels
    zoomed = coco_image.crop(Box(0, 0, 400, 240), out_size=(800, 480))
    dets = call(gt_registry, "objDet", image=zoomed, query="remote")
    assert sorted(round(b.cx) for b in dets) == sorted(round(b.cx) for b in remotes)


def test_detect_splits_labels_and_filters_by_threshold(coco_image, cats, bare_registry):
    class ScoredTable(Backend):  # TEST DOUBLE: fixed scored boxes from the COCO fixture
        tool, name, model, version = "detect", "scored-table-test-double", "table", "test"

        def availability(self):
            return Availability(True)

        def run(self, image, labels, threshold):
            self.labels = labels
            return Detections([cats[0].replace(score=0.3), cats[1].replace(score=0.9)])

    backend = ScoredTable()
    bare_registry.add_backend(backend)
    dets = call(bare_registry, "detect", image=coco_image, query=" cat , kitten ,", threshold=0.5)
    assert backend.labels == ["cat", "kitten"]
    assert [b.score for b in dets] == [0.9]
    best_first = call(bare_registry, "detect", image=coco_image, query="cat")
    assert [b.score for b in best_first] == [0.9, 0.3]


def test_detect_query_literal_check(bare_registry):
    check = bare_registry.signature("objDet").literal_checks["query"]
    assert check("dog,cat") is None
    assert "at least one object name" in check(" , ")
    assert "region name" in check("TOP")


def test_ocr_maps_lines_and_words_to_root(bare_registry, coco_image):
    class FixedLines(Backend):  # TEST DOUBLE: one line with one word, in the image's own pixels
        tool, name, model, version = "ocr", "fixed-lines-test-double", "fixed", "test"

        def availability(self):
            return Availability(True)

        def run(self, image):
            word = TextLine("HELLO", Box(10, 10, 50, 20), 0.8)
            return TextLines([TextLine("HELLO", Box(10, 10, 50, 20), 0.8, (word,))])

    bare_registry.add_backend(FixedLines())
    part = crop(image=coco_image, box=Box(100, 50, 300, 250))
    lines = call(bare_registry, "ocr", image=part)
    assert lines[0].box.xyxy == (110, 60, 150, 70)
    assert lines[0].words[0].box.xyxy == (110, 60, 150, 70)


def test_depth_of_the_wrong_size_is_a_tool_error(bare_registry, coco_image):
    class WrongSize(Backend):  # TEST DOUBLE: returns a map that does not match the image
        tool, name, model, version = "depth", "wrong-size-test-double", "none", "test"

        def availability(self):
            return Availability(True)

        def run(self, image):
            return DepthMap(np.zeros((3, 3)))

    bare_registry.add_backend(WrongSize())
    with pytest.raises(ToolError, match="returned a 3x3 map for a 640x480 image"):
        call(bare_registry, "depth", image=coco_image)


def test_unavailable_backend_is_refused_with_its_reason(bare_registry, coco_image):
    class Missing(Backend):  # TEST DOUBLE: a backend whose package is not installed
        tool, name, model, version = "caption", "missing-test-double", "none", "test"

        def availability(self):
            return Availability(False, "package 'nothing' is not installed", fix="pip install nothing")

        def run(self, image):
            raise AssertionError("must not run")

    bare_registry.add_backend(Missing())
    with pytest.raises(BackendUnavailable, match="package 'nothing' is not installed") as info:
        call(bare_registry, "caption", image=coco_image)
    assert info.value.fix == "pip install nothing"


# region / LOC -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("TOP", (0, 0, 639, 240)), ("BOTTOM", (0, 240, 639, 479)),
    ("LEFT", (0, 0, 320, 479)), ("RIGHT", (320, 0, 639, 479)),
])
def test_region_and_loc_give_visprog_half_boxes_without_a_backend(bare_registry, coco_image, name, expected):
    dets = call(bare_registry, "region", image=coco_image, name=name)
    assert dets[0].xyxy == expected
    assert call(bare_registry, "LOC", image=coco_image, object=name)[0].xyxy == expected


def test_region_of_a_crop_is_in_root_pixels(coco_image):
    part = crop(image=coco_image, box=Box(100, 100, 301, 201))  # 201x101
    assert region_box(part, "RIGHT").xyxy == (200, 100, 300, 200)


def test_loc_of_an_object_detects_it(gt_registry, coco_image):
    dets = call(gt_registry, "LOC", image=coco_image, object="cat")
    assert len(dets) == 2


def test_loc_of_an_object_without_a_backend_raises(bare_registry, coco_image):
    with pytest.raises(BackendUnavailable):
        call(bare_registry, "LOC", image=coco_image, object="cat")


@pytest.mark.parametrize("name", ["top", "Left", "middle"])
def test_region_rejects_other_names(bare_registry, coco_image, name):
    with pytest.raises(ToolArgumentError, match="argument 'name' of region"):
        call(bare_registry, "region", image=coco_image, name=name)


@pytest.mark.parametrize("name", ["top", "Bottom"])
def test_loc_lower_case_region_names_are_caught(bare_registry, coco_image, name):
    problem = bare_registry.signature("LOC").literal_checks["object"](name)
    assert "region names are upper-case" in problem
    with pytest.raises(ToolArgumentError, match="upper-case"):
        call(bare_registry, "LOC", image=coco_image, object=name)
