"""Spatial and scale judgements between boxes, as three published benchmarks define them.

Pure functions first (boxes in, numbers or booleans out), then the ``spatial`` and ``scale`` tools.
Every function here reads in plain English order: ``subject`` is <relation> ``reference``.

Judges:

- **VPEval** (aszala/VPEval, ``src/evaluation_functions.py``, ``spatialEvalDino``/``scaleEvalDino``):
  box centres with a 5 px margin; true when ANY pair of detections satisfies the rule. Scale uses
  the area ratio ``area(subject) / area(reference)`` with a 5 % band for "same".
  NOTE on argument order: VPEval's own code reads ``spatialEval(image, 'A,B,left')`` as
  "B is left of A" (the PaintSkills template is "<objB> is <rel> <objA>"); the VPEval tools in
  ``vpeval.py`` take care of that order. Here the order is always subject-then-reference.
- **GenEval** (djghosh13/geneval, ``evaluation/evaluate_images.py``, ``relative_position``): the
  offset of centres (subject minus reference), shrunk per axis toward zero by
  ``0.1 * (dim_subject + dim_reference)`` and divided by the length of the unshrunk offset;
  ``|dx|`` or ``|dy|`` above 0.5 decides. Only the most confident box of each side is compared.
- **T2I-CompBench** (Karine-Huang/T2I-CompBench, ``UniDet_eval/determine_position_for_eval.py``,
  ``determine_position``): centre differences, left/right need ``|dx| > |dy|`` (above/below the
  converse), a penalty ``0.1 / IoU`` when the boxes overlap with IoU >= 0.1, and "near" within 150 px.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Literal

from vistrace.errors import ToolArgumentError
from vistrace.values import Box, Detections

from ..registry import tool

VPEVAL_MARGIN = 5.0  # pixels between centres (VPEval diff_threshold)
VPEVAL_SCALE_BAND = 0.05  # relative area difference (VPEval diff_threshold)
GENEVAL_POSITION_THRESHOLD = 0.1  # GenEval POSITION_THRESHOLD default
T2I_IOU_THRESHOLD = 0.1
T2I_NEAR_DISTANCE = 150.0

# VPEval's spatialEval checks these substrings in this order; anything else is not geometric.
VPEVAL_SPATIAL_KEYWORDS = ("left", "right", "above", "below", "front", "behind")
# VPEval's scaleEval: substring -> canonical relation, checked in this order.
VPEVAL_SCALE_KEYWORDS = (("small", "smaller"), ("big", "bigger"), ("same", "same"))

# The `spatial` tool also understands common synonyms (after VPEval's own keywords).
_SPATIAL_SYNONYMS = (("top", "above"), ("over", "above"), ("bottom", "below"), ("under", "below"),
                     ("beneath", "below"), ("near", "near"), ("next", "near"), ("beside", "near"))
_SCALE_SYNONYMS = (("larg", "bigger"), ("less", "smaller"))
_GENEVAL_NAMES = {"left": "left of", "right": "right of", "above": "above", "below": "below"}


# relation words ----------------------------------------------------------------------------------

def vpeval_spatial_keyword(relation: str) -> str | None:
    """VPEval's relation keyword for a relation phrase (substring match, VPEval's order), or None."""
    text = relation.lower()
    return next((k for k in VPEVAL_SPATIAL_KEYWORDS if k in text), None)


def vpeval_scale_keyword(relation: str) -> str | None:
    """VPEval's scale relation ('smaller', 'bigger', 'same') for a phrase, or None."""
    text = relation.lower()
    return next((canon for key, canon in VPEVAL_SCALE_KEYWORDS if key in text), None)


def spatial_keyword(relation: str) -> str | None:
    """Keyword for the ``spatial`` tool: VPEval's keywords first, then synonyms (top, under, near...)."""
    text = relation.lower()
    found = vpeval_spatial_keyword(text)
    return found or next((canon for key, canon in _SPATIAL_SYNONYMS if key in text), None)


def scale_keyword(relation: str) -> str | None:
    """Keyword for the ``scale`` tool: VPEval's keywords first, then 'larger'/'less'."""
    text = relation.lower()
    return vpeval_scale_keyword(text) or next((canon for key, canon in _SCALE_SYNONYMS if key in text), None)


# VPEval ------------------------------------------------------------------------------------------

def vpeval_spatial_holds(subject: Box, reference: Box, keyword: str, margin: float = VPEVAL_MARGIN) -> bool:
    """VPEval's centre rule: is ``subject`` <keyword> ``reference`` (left/right/above/below)?"""
    dx = subject.cx - reference.cx
    dy = subject.cy - reference.cy
    rules = {"left": dx < -margin, "right": dx > margin, "above": dy < -margin, "below": dy > margin}
    if keyword not in rules:
        raise ValueError(f"VPEval centre rule covers left/right/above/below, not {keyword!r}")
    return rules[keyword]


def vpeval_scale_holds(subject: Box, reference: Box, keyword: str, band: float = VPEVAL_SCALE_BAND) -> bool:
    """VPEval's area rule: is ``subject`` <smaller/bigger/same> than ``reference``?

    ``r = area(subject) / area(reference)``; same: ``|1 - r| < band``; bigger: ``r > 1`` and
    ``|1 - r| > band``; smaller: ``r < 1`` and ``|1 - r| > band``. A zero-area reference is never
    compared (VPEval would divide by zero).
    """
    if reference.area <= 0:
        return False
    r = subject.area / reference.area
    if keyword == "same":
        return abs(1 - r) < band
    if keyword == "bigger":
        return r > 1 and abs(1 - r) > band
    if keyword == "smaller":
        return r < 1 and abs(1 - r) > band
    raise ValueError(f"VPEval scale rule covers smaller/bigger/same, not {keyword!r}")


def find_pair(subjects: Iterable[Box], references: Iterable[Box],
              holds: Callable[[Box, Box], bool]) -> tuple[Box, Box] | None:
    """The first (subject, reference) pair for which ``holds`` is true, or None (VPEval's ANY pair).

    A box never pairs with itself. VPEval pairs every detection of a class with every other one,
    itself included, when A and B name the same class; that lets "same size" hold for a single
    object compared with itself. We treat it as a defect and skip self-pairs.
    """
    refs = list(references)
    for s in subjects:
        for r in refs:
            if s is r or s == r:
                continue
            if holds(s, r):
                return s, r
    return None


# GenEval -----------------------------------------------------------------------------------------

def geneval_position(a: Box, b: Box, threshold: float = GENEVAL_POSITION_THRESHOLD) -> dict:
    """GenEval's relative position of box ``a`` with respect to box ``b``.

    Returns ``{"dx", "dy", "relations"}``: the shrunk, normalised centre offsets and the list of
    relations that hold for ``a`` ("left of", "right of", "above", "below"; several may hold, none
    when the shrunk offset vanishes).
    """
    off_x, off_y = a.cx - b.cx, a.cy - b.cy
    rev_x = math.copysign(max(abs(off_x) - threshold * (a.width + b.width), 0.0), off_x)
    rev_y = math.copysign(max(abs(off_y) - threshold * (a.height + b.height), 0.0), off_y)
    if abs(rev_x) < 1e-3 and abs(rev_y) < 1e-3:
        return {"dx": 0.0, "dy": 0.0, "relations": []}
    norm = math.hypot(off_x, off_y)
    dx, dy = rev_x / norm, rev_y / norm
    relations = []
    if dx < -0.5:
        relations.append("left of")
    if dx > 0.5:
        relations.append("right of")
    if dy < -0.5:
        relations.append("above")
    if dy > 0.5:
        relations.append("below")
    return {"dx": dx, "dy": dy, "relations": relations}


# T2I-CompBench -----------------------------------------------------------------------------------

def t2i_spatial_score(a: Box, b: Box, keyword: str, iou_threshold: float = T2I_IOU_THRESHOLD,
                      near: float = T2I_NEAR_DISTANCE) -> float:
    """T2I-CompBench's 2D position score of "``a`` is <keyword> ``b``" (0..1).

    ``keyword`` is left, right, above, below or near. The direction must hold with the dominant
    axis; overlapping boxes (IoU >= 0.1) score ``0.1 / IoU`` instead of 1. "near" scores 1 within
    150 px on either axis, else ``150 / max(|dx|, |dy|)``.
    """
    x_dist = b.cx - a.cx  # T2I-CompBench: box2 centre minus box1 centre, box1 = the subject
    y_dist = b.cy - a.cy
    iou = a.iou(b)
    if keyword == "near":
        if abs(x_dist) < near or abs(y_dist) < near:
            return 1.0
        return near / max(abs(x_dist), abs(y_dist))
    directions = {
        "left": (x_dist > 0, abs(x_dist) > abs(y_dist)),
        "right": (x_dist < 0, abs(x_dist) > abs(y_dist)),
        "above": (y_dist > 0, abs(y_dist) > abs(x_dist)),
        "below": (y_dist < 0, abs(y_dist) > abs(x_dist)),
    }
    if keyword not in directions:
        raise ValueError(f"T2I-CompBench 2D rule covers left/right/above/below/near, not {keyword!r}")
    sign_ok, axis_ok = directions[keyword]
    if not (sign_ok and axis_ok):
        return 0.0
    return 1.0 if iou < iou_threshold else iou_threshold / iou


# tools -------------------------------------------------------------------------------------------

def _boxes(x: Box | Detections) -> list[Box]:
    return list(x) if isinstance(x, Detections) else [x]


def _most_confident(x: Box | Detections) -> Box | None:
    if isinstance(x, Box):
        return x
    if not len(x):
        return None
    return x.best() if any(s is not None for s in x.scores) else x[0]


def _check_spatial_relation(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    if spatial_keyword(value) is None:
        return (f"spatial relation {value!r} names no direction: use left, right, above, below "
                "(or top/bottom/under/over), or near with judge='t2i'")
    if spatial_keyword(value) in ("front", "behind"):
        return f"spatial relation {value!r} needs depth: use spatial_eval(image, 'A,B,{value}') instead"
    return None


def _check_scale_relation(value: object) -> str | None:
    if isinstance(value, str) and scale_keyword(value) is None:
        return f"scale relation {value!r} is none of: smaller, bigger (larger), same"
    return None


@tool(category="relations", literal_checks={"relation": _check_spatial_relation})
def spatial(a: Box | Detections, b: Box | Detections, relation: str,
            judge: Literal["vpeval", "geneval", "t2i"] = "vpeval") -> bool:
    """Whether a is <relation> b (left of, right of, above, below; near with the t2i judge).

    Reads in plain English order: ``spatial(cats, dogs, 'left of')`` asks "is a cat left of a dog".
    The judge picks a published rule: 'vpeval' (box centres, 5 px margin, any pair of detections,
    a box never paired with itself), 'geneval' (most confident box of each, centre offset shrunk by
    0.1x the summed box sizes and normalised, |offset| > 0.5) or 't2i' (T2I-CompBench: dominant axis
    of the centre difference; true when its position score is above 0). Empty Detections: false.

    Args:
        a: The subject: a Box or Detections.
        b: The reference: a Box or Detections.
        relation: The relation phrase, e.g. 'left of', 'to the right of', 'above', 'below', 'near'.
        judge: Which benchmark's rule decides: 'vpeval', 'geneval' or 't2i'.

    Returns:
        True when a is <relation> b under the chosen judge.
    """
    problem = _check_spatial_relation(relation)
    if problem:
        raise ToolArgumentError(problem)
    keyword = spatial_keyword(relation)
    if keyword == "near" and judge != "t2i":
        raise ToolArgumentError(f"relation {relation!r} ('near') is judged only by judge='t2i'")
    if judge == "vpeval":
        return find_pair(_boxes(a), _boxes(b), lambda s, r: vpeval_spatial_holds(s, r, keyword)) is not None
    box_a, box_b = _most_confident(a), _most_confident(b)
    if box_a is None or box_b is None:
        return False
    if judge == "geneval":
        return _GENEVAL_NAMES[keyword] in geneval_position(box_a, box_b)["relations"]
    return t2i_spatial_score(box_a, box_b, keyword) > 0


@tool(category="relations", literal_checks={"relation": _check_scale_relation})
def scale(a: Box | Detections, b: Box | Detections, relation: str) -> bool:
    """Whether a is bigger than, smaller than or the same size as b (VPEval's area rule).

    ``r = area(a) / area(b)``: 'same' when ``|1 - r| < 0.05``, 'bigger' when ``r > 1`` beyond the
    5 % band, 'smaller' when ``r < 1`` beyond it. With Detections any pair counts; a box is never
    compared with itself. Empty Detections: false.

    Args:
        a: The subject: a Box or Detections.
        b: The reference: a Box or Detections.
        relation: 'bigger' (or 'larger'), 'smaller' or 'same' (any phrase containing one of them).

    Returns:
        True when a is <relation> b.
    """
    problem = _check_scale_relation(relation)
    if problem:
        raise ToolArgumentError(problem)
    keyword = scale_keyword(relation)
    return find_pair(_boxes(a), _boxes(b), lambda s, r: vpeval_scale_holds(s, r, keyword)) is not None


TOOLS = (spatial, scale)
