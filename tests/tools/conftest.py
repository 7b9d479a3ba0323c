"""Fixtures for the built-in tool tests: the COCO fixture (real image, real boxes) and test-only backends.

The backends here are TEST DOUBLES, clearly named, and live only in tests: one answers ``detect``
with the COCO ground-truth boxes, one answers ``ask`` from a fixed script, one gives a synthetic
depth ramp. Product code ships no fake backends.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from vistrace.tools import Availability, Backend, Registry
from vistrace.tools.builtin import register_builtin
from vistrace.values import Box, DepthMap, Detections, Image

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
COCO_DIR = DATA / "coco_fixture"


def load_coco() -> dict:
    path = COCO_DIR / "000000039769_annotations.json"
    if not path.exists():
        pytest.skip(f"COCO fixture not found at {path} (shared data absent)")
    return json.loads(path.read_text())


def coco_boxes(category: str) -> Detections:
    """Ground-truth boxes of one COCO category, left to right, as Detections (score 1.0)."""
    ann = load_coco()
    boxes = [Box(*a["bbox_xyxy"], label=a["category"], score=1.0) for a in ann["annotations"]
             if a["category"] == category]
    return Detections(sorted(boxes, key=lambda b: b.cx), query=category, image_size=(ann["width"], ann["height"]))


@pytest.fixture
def coco() -> dict:
    return load_coco()


@pytest.fixture
def coco_image() -> Image:
    load_coco()
    return Image.open(COCO_DIR / "000000039769.png")


@pytest.fixture
def cats() -> Detections:
    """The two COCO cats: [left cat, right cat]."""
    return coco_boxes("cat")


@pytest.fixture
def remotes() -> Detections:
    return coco_boxes("remote")


def blank(width: int, height: int) -> Image:
    """A synthetic RGB image with a horizontal/vertical ramp so crops differ in content."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    arr = np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image(PILImage.fromarray(arr), source=f"synthetic {width}x{height}")


class CocoGroundTruthDetector(Backend):
    """TEST DOUBLE for ``detect``: returns the COCO ground-truth boxes of the queried categories.

    Boxes are returned in the given image's own pixels (as a real detector would), clipped to it,
    so the tool's mapping back to root pixels is exercised.
    """

    tool = "detect"
    name = "coco-ground-truth-test-double"
    model = "coco-val2017-39769-annotations"
    version = "test"

    def availability(self) -> Availability:
        return Availability(True, "test double")

    def run(self, image: Image, labels: list[str], threshold: float) -> Detections:
        found = []
        region = image.region()
        for a in load_coco()["annotations"]:
            if a["category"] not in labels:
                continue
            b = Box(*a["bbox_xyxy"], label=a["category"], score=1.0)
            if b.x2 <= region.x1 or b.x1 >= region.x2 or b.y2 <= region.y1 or b.y1 >= region.y2:
                continue
            found.append(image.from_root(b).clip(image.width, image.height))
        return Detections(found, query=",".join(labels))


class QueryTableDetector(Backend):
    """TEST DOUBLE for ``detect``: a fixed {query label: root boxes} table (boxes from the COCO fixture).

    Lets a test name two boxes of the same class apart ('left cat', 'right cat'). Returns boxes in
    the given image's own pixels, like a real detector.
    """

    tool = "detect"
    name = "query-table-test-double"
    model = "table"
    version = "test"

    def __init__(self, table: dict[str, list[Box]]):
        self.table = {k: list(v) for k, v in table.items()}

    def availability(self) -> Availability:
        return Availability(True, "test double")

    def run(self, image: Image, labels: list[str], threshold: float) -> Detections:
        boxes = [image.from_root(b.replace(label=lab)) for lab in labels for b in self.table.get(lab, [])]
        return Detections(boxes, query=",".join(labels))


class ScriptedAnswers(Backend):
    """TEST DOUBLE for ``ask``: answers from a {question: answer} script, records what it was asked."""

    tool = "ask"
    name = "scripted-answers-test-double"
    model = "script"
    version = "test"

    def __init__(self, script: dict[str, str], default: str = "no"):
        self.script = dict(script)
        self.default = default
        self.asked: list[tuple[str, list[str]]] = []

    def availability(self) -> Availability:
        return Availability(True, "test double")

    def run(self, image: Image, question: str, choices: list[str]) -> str:
        self.asked.append((question, choices))
        return self.script.get(question, self.default)


class SyntheticDepthRamp(Backend):
    """TEST DOUBLE for ``depth``: depth grows with height in the picture (lower rows are nearer).

    ``larger_is_farther`` with value = (H - y): a box lower in the image has a smaller mean depth.
    """

    tool = "depth"
    name = "synthetic-depth-ramp-test-double"
    model = "ramp"
    version = "test"

    def availability(self) -> Availability:
        return Availability(True, "test double")

    def run(self, image: Image) -> DepthMap:
        h, w = image.height, image.width
        arr = np.repeat((h - np.arange(h, dtype=np.float32))[:, None], w, axis=1)
        return DepthMap(arr, convention="larger_is_farther", unit="relative")


@pytest.fixture
def bare_registry() -> Registry:
    """Built-in tools and aliases, no backends at all."""
    reg = Registry()
    register_builtin(reg)
    return reg


@pytest.fixture
def gt_registry() -> Registry:
    """Built-in tools with the COCO ground-truth detector and the depth ramp (test doubles)."""
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(CocoGroundTruthDetector())
    reg.add_backend(SyntheticDepthRamp())
    return reg


@pytest.fixture
def make_image():
    """Factory: a synthetic ramp image of the given size."""
    return blank


@pytest.fixture
def add_answers(gt_registry):
    """Factory: give ``gt_registry`` a scripted ``ask`` backend; returns (registry, backend)."""

    def make(script: dict[str, str], default: str = "no"):
        backend = ScriptedAnswers(script, default)
        gt_registry.add_backend(backend)
        return gt_registry, backend

    return make


@pytest.fixture
def sided_cats_registry(cats) -> Registry:
    """Built-in tools whose detector knows 'left cat' and 'right cat' (the two COCO cats) apart."""
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(QueryTableDetector({"left cat": [cats[0]], "right cat": [cats[1]]}))
    return reg


@pytest.fixture
def sroie_lines():
    """OCR lines of SROIE receipt 002 (ground-truth transcripts and boxes) as TextLines."""
    from vistrace.values import TextLine, TextLines

    path = DATA / "sroie" / "box" / "002.csv"
    if not path.exists():
        pytest.skip(f"SROIE fixture not found at {path} (shared data absent)")
    lines = []
    for row in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = row.split(",", 8)
        if len(parts) < 9:
            continue
        xs, ys = [float(v) for v in parts[0:8:2]], [float(v) for v in parts[1:8:2]]
        lines.append(TextLine(parts[8], Box(min(xs), min(ys), max(xs), max(ys)), 1.0))
    return TextLines(lines)
