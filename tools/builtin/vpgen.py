"""VPGen's planning steps (Cho, Zala, Bansal, "Visual Programming for Text-to-Image Generation and
Evaluation"): prompt -> objects and counts -> layout boxes, both written by an LLM.

VPGen's text forms, which the pure functions here read and write:

- objects and counts: ``dog (2) cat (1)`` — each object name followed by its count in brackets;
- layout: ``dog (10,20,45,70) dog (55,22,90,71) cat (30,60,60,95)`` — one box per object instance,
  ``x1,y1,x2,y2`` quantised to 100 bins of the canvas (VPGen's format; bin b covers
  ``b/100 .. (b+1)/100`` of the side, so ``x = b * width / 100``). Normalised decimal boxes
  (``0.10,0.20,0.45,0.70``) and pixel boxes (any value above 100) are accepted too, and said so.

Backend contract: ``plan_objects``: ``run(prompt=str) -> str`` (the objects-and-counts text);
``plan_layout``: ``run(prompt=str, objects=list[tuple[str, int]], width=int, height=int) -> str``
(the layout text, which the tool parses and checks against the planned objects).
"""

from __future__ import annotations

import re

from vistrace.errors import ToolArgumentError, ToolError
from vistrace.values import Box, Detections

from ..backends import Backend
from ..registry import tool

BINS = 100          # VPGen quantises coordinates to 100 bins per side
MAX_OBJECTS = 8     # distinct object names in a plan
MAX_COUNT = 12      # instances of one object
_OBJECT = re.compile(r"([A-Za-z][A-Za-z \-]*?)\s*\(\s*(\d+)\s*\)")
_BOX = re.compile(r"([A-Za-z][A-Za-z \-]*?)\s*[\(\[]\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*[\)\]]")


def parse_objects(text: str) -> list[tuple[str, int]]:
    """[(name, count)] of VPGen's ``dog (2) cat (1)``; the same name twice adds up. ToolError when none."""
    found: dict[str, int] = {}
    for name, count in _OBJECT.findall(str(text)):
        key = " ".join(name.lower().split())
        found[key] = found.get(key, 0) + int(count)
    if not found:
        raise ToolError(f"expected objects and counts such as 'dog (2) cat (1)', got {str(text)[:80]!r}")
    bad = [f"{n} ({c})" for n, c in found.items() if not 1 <= c <= MAX_COUNT]
    if bad:
        raise ToolError(f"object counts must be 1..{MAX_COUNT}: {', '.join(bad)}")
    if len(found) > MAX_OBJECTS:
        raise ToolError(f"at most {MAX_OBJECTS} distinct objects, got {len(found)}")
    return list(found.items())


def format_objects(objects: list[tuple[str, int]]) -> str:
    """VPGen's text for [(name, count)]."""
    return " ".join(f"{name} ({count})" for name, count in objects)


def box_format(values: list[float]) -> str:
    """'normalised' (all within 0..1 with a decimal point), 'pixels' (any above 100) or 'bins' (VPGen's 0..100)."""
    if any(v > BINS for v in values):
        return "pixels"
    if all(0 <= v <= 1 for v in values) and any(v != int(v) for v in values):
        return "normalised"
    return "bins"


def parse_layout(text: str, width: int, height: int) -> Detections:
    """The boxes of a layout text, in canvas pixels, labelled with their object names.

    Coordinates in VPGen's 100 bins, normalised decimals or pixels (one form for the whole layout,
    decided from all its numbers); each box's corners are ordered (x1 < x2, y1 < y2) and clipped to
    the canvas. ToolError for no boxes or a box with no area.
    """
    rows = _BOX.findall(str(text))
    if not rows:
        raise ToolError(f"expected a layout such as 'dog (10,20,45,70) cat (50,20,90,70)', got {str(text)[:80]!r}")
    values = [float(v) for row in rows for v in row[1:]]
    form = box_format(values)
    sx, sy = {"pixels": (1.0, 1.0), "normalised": (width, height), "bins": (width / BINS, height / BINS)}[form]
    boxes = []
    for name, *coords in rows:
        x1, y1, x2, y2 = (float(c) for c in coords)
        x1, x2 = sorted((x1 * sx, x2 * sx))
        y1, y2 = sorted((y1 * sy, y2 * sy))
        x1, x2 = max(0.0, x1), min(float(width), x2)
        y1, y2 = max(0.0, y1), min(float(height), y2)
        label = " ".join(name.lower().split())
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise ToolError(f"layout box {label} ({', '.join(coords)}) has no area on the {width}x{height} canvas")
        boxes.append(Box(round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1), label=label))
    return Detections(boxes, query=f"layout ({form})", image_size=(width, height))


def check_layout(layout: Detections, objects: list[tuple[str, int]]) -> None:
    """ToolError unless the layout has exactly ``count`` boxes of every planned object and no other."""
    have: dict[str, int] = {}
    for b in layout:
        have[b.label] = have.get(b.label, 0) + 1
    want = dict(objects)
    if have != want:
        raise ToolError(f"the layout does not match the planned objects: planned {format_objects(objects)}, "
                        f"layout has {format_objects(list(have.items()))}")


def _check_prompt(value: object) -> str | None:
    if isinstance(value, str) and not value.strip():
        return "expected a non-empty text-to-image prompt"
    return None


def _check_objects(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parse_objects(value)
    except ToolError as exc:
        return exc.message
    return None


@tool(category="generation", expert=True, literal_checks={"prompt": _check_prompt})
def plan_objects(prompt: str, backend: Backend = None) -> str:
    """VPGen step 1: the objects a prompt asks for and how many of each, as 'dog (2) cat (1)'.

    Args:
        prompt: The text-to-image prompt, e.g. 'two dogs and a cat on a sofa'.

    Returns:
        The objects and counts in VPGen's form.
    """
    if not prompt.strip():
        raise ToolArgumentError("plan_objects needs a non-empty prompt")
    text = backend.run(prompt=prompt)
    if not isinstance(text, str):
        raise ToolError(f"backend '{backend.name}' of plan_objects returned {type(text).__name__}, expected str")
    return format_objects(parse_objects(text))


@tool(category="generation", expert=True, literal_checks={"prompt": _check_prompt, "objects": _check_objects})
def plan_layout(prompt: str, objects: str, width: int = 512, height: int = 512, backend: Backend = None) -> Detections:
    """VPGen step 2: one labelled box per planned object instance, on a width x height canvas.

    The backend writes VPGen's layout text (100-bin coordinates; normalised or pixel boxes are also
    read); the layout must hold exactly the planned objects and counts.

    Args:
        prompt: The text-to-image prompt.
        objects: The objects and counts from plan_objects, e.g. 'dog (2) cat (1)'.
        width: Canvas width in pixels.
        height: Canvas height in pixels.

    Returns:
        The layout boxes in canvas pixels, labelled with the object names.
    """
    planned = parse_objects(objects)
    for name, v in (("width", width), ("height", height)):
        if not 64 <= v <= 2048:
            raise ToolArgumentError(f"{name} must be between 64 and 2048 pixels, got {v}")
    text = backend.run(prompt=prompt, objects=planned, width=width, height=height)
    if not isinstance(text, str):
        raise ToolError(f"backend '{backend.name}' of plan_layout returned {type(text).__name__}, expected str")
    layout = parse_layout(text, width, height)
    check_layout(layout, planned)
    return layout


TOOLS = (plan_objects, plan_layout)
