"""VPEval's evaluation modules as tools (aszala/VPEval, ``src/evaluation_functions.py``).

Each returns an :class:`Answer` whose value is a bool, with the evidence boxes (root pixels) and a
text explanation in VPEval's wording. Published semantics are kept; known defects are fixed and
marked: countEval parses its target with a regex instead of ``exec`` and rejects malformed targets;
a detection is never paired with itself in spatial/scale checks; the argument order of
spatialEval/scaleEval is explicit (``order``); non-geometric relations reach VQA with the relation
text itself (VPEval's code asked about the word "skip" there).
"""

from __future__ import annotations

import operator
import re
from typing import Literal

from vistrace.errors import ToolArgumentError
from vistrace.values import Answer, Box, Detections, Image, TextLines, normalize_vpeval

from ..registry import ToolContext, tool
from .relations import (
    _GENEVAL_NAMES, VPEVAL_MARGIN, find_pair, geneval_position, vpeval_scale_holds, vpeval_scale_keyword,
    vpeval_spatial_holds, vpeval_spatial_keyword,
)

# count expressions ---------------------------------------------------------------------------

NUMBER_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                "eight": 8, "nine": 9, "ten": 10}
_OPS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, ">": operator.gt,
        "<": operator.lt}
_COUNT_RE = re.compile(r"^\s*(==|!=|>=|<=|>|<|=)?\s*(\d+|" + "|".join(NUMBER_WORDS) + r")\s*$", re.IGNORECASE)
COUNT_FORMS = "'==3', '>1', '>=2', '<4', '<=4', '!=0', '=3', '3' or with a number word one..ten ('==three')"


def parse_count_target(text: str) -> tuple[str, int]:
    """Parse a countEval target into (operator, number); '=' and a bare number mean '=='.

    Raises ToolArgumentError naming the accepted forms for anything else (never evaluated as code).
    """
    m = _COUNT_RE.match(str(text))
    if not m:
        raise ToolArgumentError(f"countEval target must be a comparison with a whole number such as {COUNT_FORMS}; "
                                f"got {text!r}")
    op = m.group(1) or "=="
    op = "==" if op == "=" else op
    num = m.group(2).lower()
    return op, NUMBER_WORDS[num] if num in NUMBER_WORDS else int(num)


def count_matches(n: int, target: str) -> bool:
    """Whether ``n`` satisfies a countEval target such as '>=2'."""
    op, k = parse_count_target(target)
    return _OPS[op](n, k)


def as_number(text: str) -> int | None:
    """A whole number written as digits or as a word zero..ten (VQA answers), else None."""
    t = normalize_vpeval(text)
    if t.isdigit():
        return int(t)
    return NUMBER_WORDS.get(t)


def _check_count_target(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        parse_count_target(value)
    except ToolArgumentError as exc:
        return exc.message
    return None


# 'A,B,relation' strings --------------------------------------------------------------------------

def parse_objects_relation(module: str, text: str) -> tuple[str, str, str]:
    """Split VPEval's 'objectA,objectB,relation' (exactly three non-empty parts)."""
    problem = _triple_problem(module, text)
    if problem:
        raise ToolArgumentError(problem)
    a, b, rel = (p.strip() for p in text.split(","))
    return a, b, rel


def _triple_problem(module: str, text: str) -> str | None:
    parts = str(text).split(",")
    if len(parts) != 3:
        return f"{module} expects 'objectA,objectB,relation' with 3 parts, got {len(parts)}: {text!r}"
    names = ("objectA", "objectB", "relation")
    empty = [n for n, p in zip(names, parts) if not p.strip()]
    if empty:
        return f"{module} expects 'objectA,objectB,relation' with 3 non-empty parts; {', '.join(empty)} empty in {text!r}"
    return None


def _triple_check(module: str):
    def check(value: object) -> str | None:
        return _triple_problem(module, value) if isinstance(value, str) else None

    return check


def _check_non_empty(value: object) -> str | None:
    if isinstance(value, str) and not normalize_vpeval(value):
        return f"expected a non-empty text, got {value!r}"
    return None


def _check_choices(value: object) -> str | None:
    if isinstance(value, str) and len([c for c in value.split(",") if c.strip()]) < 2:
        return f"vqa expects at least 2 comma-separated choices such as 'yes,no', got {value!r}"
    return None


# shared steps ----------------------------------------------------------------------------------

def _names(a: str, b: str, order: str) -> tuple[str, str]:
    """(subject, reference) for VPEval's 'A,B,rel': 'b_rel_a' (VPEval's code) reads "B rel A"."""
    return (b, a) if order == "b_rel_a" else (a, b)


def _detect_both(image: Image, ctx: ToolContext, subject: str, reference: str) -> tuple[Detections, Detections]:
    subj = ctx.call("detect", image=image, query=subject)
    if subject.lower() == reference.lower():
        return subj, subj  # one list; find_pair keeps a box from pairing with itself
    return subj, ctx.call("detect", image=image, query=reference)


def _missing(subject: str, reference: str, subj: Detections, ref: Detections) -> Answer | None:
    same = subject.lower() == reference.lower()
    if not subj:
        return Answer(False, tuple(ref), explanation=f'No "{subject}" object found.')
    if not ref:
        return Answer(False, tuple(subj), explanation=f'No "{reference}" object found.')
    if same and len(subj) < 2:
        return Answer(False, tuple(subj), explanation=f'Only one "{subject}" object found; the relation needs two.')
    return None


def _ask_yes(image: Image, ctx: ToolContext, question: str, why: str) -> Answer:
    answer = ctx.call("ask", image=image, question=question, choices="yes,no")
    ok = normalize_vpeval(answer) == "yes"
    return Answer(ok, explanation=f"{why}; asked VQA: Q: {question} A: {answer}")


def _spatial_phrase(relation: str, keyword: str | None) -> str:
    if keyword in ("left", "right"):
        return f"to the {keyword} of"
    if keyword == "front":
        return "in front of"
    return keyword or relation


# tools -----------------------------------------------------------------------------------------

@tool(category="vpeval", literal_checks={"target": _check_non_empty})
def object_eval(image: Image, target: str, ctx: ToolContext = None) -> Answer:
    """Whether an object appears in the image (VPEval objectEval: at least one detection).

    Args:
        image: The image to check.
        target: The object name, e.g. 'dog'.

    Returns:
        Answer(True/False) with the detections as evidence.
    """
    dets = ctx.call("detect", image=image, query=target)
    ok = len(dets) > 0
    text = f'"{target}" object found ({len(dets)}).' if ok else f'No "{target}" object found.'
    return Answer(ok, tuple(dets), explanation=text)


@tool(category="vpeval", literal_checks={"target": _check_count_target})
def count_eval(objects: Detections, target: str) -> Answer:
    """Whether the number of detections satisfies a count expression (VPEval countEval).

    The target is a comparison with a whole number: '==3', '>1', '>=2', '<4', '<=4', '!=0', '=3'
    and '3' (both mean ==3), with digits or a number word one..ten ('==three'). It is parsed, never
    executed; a malformed target is an error (VPEval silently scored it false).

    Args:
        objects: The detections to count, e.g. objDet(image, 'dog').
        target: The count expression, e.g. '==3' or '>=two'.

    Returns:
        Answer(True/False) with the counted boxes as evidence.
    """
    op, k = parse_count_target(target)
    n = len(objects)
    ok = _OPS[op](n, k)
    what = objects.query or "target"
    want = str(k) if op == "==" else f"{op}{k}"  # VPEval's wording: 'There are 3 "dog" objects, not 10.'
    text = f'There are {n} "{what}" objects' + (f" ({op}{k} holds)." if ok else f", not {want}.")
    return Answer(ok, tuple(objects), explanation=text)


@tool(category="vpeval", literal_checks={"objects_relation": _triple_check("spatialEval")})
def spatial_eval(image: Image, objects_relation: str, ctx: ToolContext = None,
                 order: Literal["b_rel_a", "a_rel_b"] = "b_rel_a",
                 judge: Literal["vpeval", "geneval"] = "vpeval") -> Answer:
    """Whether two objects stand in a spatial relation (VPEval spatialEval on 'A,B,relation').

    Argument order: by default (``order='b_rel_a'``) 'A,B,left' means "B is left of A", as VPEval's
    code reads it (PaintSkills template "<objB> is <rel> <objA>"); ``order='a_rel_b'`` reads
    "A is left of B". Relations are found by substring in VPEval's order: left, right, above, below
    (box centres, 5 px margin, any pair of detections, never a box with itself), front, behind (mean
    depth inside the boxes, from the depth tool). Any other relation is not geometric: as VPEval
    publishes, a VQA model is asked "Is the B <relation> the A?" and 'yes' counts as true.
    ``judge='geneval'`` decides left/right/above/below by GenEval's rule instead: the most confident
    box of each object, centre offset shrunk by 0.1x the summed box sizes, normalised, beyond 0.5.

    Args:
        image: The image to check.
        objects_relation: 'objectA,objectB,relation', e.g. 'dog,cat,left of'.
        order: 'b_rel_a' (VPEval's reading, the default) or 'a_rel_b'.
        judge: 'vpeval' (centres, 5 px margin, any pair) or 'geneval' (most confident pair, GenEval's rule).

    Returns:
        Answer(True/False) with the deciding pair (or all detections) as evidence.
    """
    a, b, relation = parse_objects_relation("spatialEval", objects_relation)
    keyword = vpeval_spatial_keyword(relation)
    subject, reference = _names(a, b, order)
    phrase = _spatial_phrase(relation, keyword)
    if keyword is None:
        return _ask_yes(image, ctx, f"Is the {subject} {relation} the {reference}?",
                        f"relation {relation!r} is not geometric (VPEval routes it to VQA)")
    subj, ref = _detect_both(image, ctx, subject, reference)
    missing = _missing(subject, reference, subj, ref)
    if missing is not None:
        return missing
    if keyword in ("front", "behind"):
        dm = ctx.call("depth", image=image)

        def holds(s: Box, r: Box) -> bool:
            ls, lr = image.from_root(s), image.from_root(r)
            return dm.nearer(ls, lr) if keyword == "front" else dm.nearer(lr, ls)

        rule = f"mean depth in the boxes ({dm.convention})"
    elif judge == "geneval":
        subj, ref = Detections(subj[:1], query=subj.query, image_size=subj.image_size), \
            Detections([r for r in ref if r != subj[0]][:1], query=ref.query, image_size=ref.image_size)
        if not ref:
            return Answer(False, tuple(subj), explanation=f'Only one "{subject}" object found; the relation needs two.')

        def holds(s: Box, r: Box) -> bool:
            return _GENEVAL_NAMES[keyword] in geneval_position(s, r)["relations"]

        rule = "GenEval: most confident boxes, shrunk centre offset > 0.5"
    else:
        def holds(s: Box, r: Box) -> bool:
            return vpeval_spatial_holds(s, r, keyword)

        rule = f"box centres, {VPEVAL_MARGIN:g} px margin"
    pair = find_pair(subj, ref, holds)
    if pair is None:
        return Answer(False, tuple(subj) + tuple(x for x in ref if x not in subj),
                      explanation=f'No pair of ("{subject}", "{reference}") has "{subject}" {phrase} "{reference}" ({rule}).')
    s, r = pair
    where = f"centres ({s.cx:.0f},{s.cy:.0f}) and ({r.cx:.0f},{r.cy:.0f})" if keyword not in ("front", "behind") else rule
    return Answer(True, pair, explanation=f'"{subject}" is {phrase} "{reference}": {where}.')


@tool(category="vpeval", literal_checks={"objects_relation": _triple_check("scaleEval")})
def scale_eval(image: Image, objects_relation: str, ctx: ToolContext = None,
               order: Literal["b_rel_a", "a_rel_b"] = "b_rel_a") -> Answer:
    """Whether one object is bigger/smaller than, or the same size as, another (VPEval scaleEval).

    Argument order as in spatial_eval: by default 'A,B,bigger' means "B is bigger than A" (VPEval's
    code: ratio area(B) / area(A)); ``order='a_rel_b'`` flips it. The relation is found by substring:
    small -> smaller, big -> bigger, same; 'same' holds within 5 % of equal area, bigger/smaller
    beyond it, for any pair of detections (never a box with itself). Other relations go to VQA.

    Args:
        image: The image to check.
        objects_relation: 'objectA,objectB,relation', e.g. 'cat,dog,bigger'.
        order: 'b_rel_a' (VPEval's reading, the default) or 'a_rel_b'.

    Returns:
        Answer(True/False) with the deciding pair (or all detections) as evidence.
    """
    a, b, relation = parse_objects_relation("scaleEval", objects_relation)
    keyword = vpeval_scale_keyword(relation)
    subject, reference = _names(a, b, order)
    if keyword is None:
        joined = relation if re.search(r"\b(than|as)\b", relation) else f"{relation} than"
        return _ask_yes(image, ctx, f"Is the {subject} {joined} the {reference}?",
                        f"relation {relation!r} is not a size keyword (VPEval routes it to VQA)")
    phrase = "the same size as" if keyword == "same" else f"{keyword} than"
    subj, ref = _detect_both(image, ctx, subject, reference)
    missing = _missing(subject, reference, subj, ref)
    if missing is not None:
        return missing
    pair = find_pair(subj, ref, lambda s, r: vpeval_scale_holds(s, r, keyword))
    if pair is None:
        return Answer(False, tuple(subj) + tuple(x for x in ref if x not in subj),
                      explanation=f'No pair of ("{subject}", "{reference}") has "{subject}" {phrase} "{reference}" '
                                  "(area ratio, 5% band).")
    s, r = pair
    return Answer(True, pair, explanation=f'"{subject}" is {phrase} "{reference}": areas {s.area:.0f} and '
                                          f"{r.area:.0f} px (ratio {s.area / r.area:.2f}).")


@tool(category="vpeval", literal_checks={"target": _check_non_empty})
def text_eval(text: TextLines, target: str) -> Answer:
    """Whether a text appears among the recognised text (VPEval textEval).

    Both sides are normalised as VPEval does (. , ? ! * removed, lower-cased); the target matches
    a whole recognised line, or its words appear consecutively in the recognised words.

    Args:
        text: The recognised text, e.g. ocr(image).
        target: The text to look for.

    Returns:
        Answer(True/False) with the matching lines' boxes as evidence.
    """
    want = normalize_vpeval(target)
    if not want:
        raise ToolArgumentError(f"textEval needs a target with letters or digits, got {target!r}")
    for line in text:
        if normalize_vpeval(line.text) == want:
            return Answer(True, (line.box,), explanation=f'"{target}" text found.')
    tokens = want.split()
    stream = [(tok, i) for i, line in enumerate(text) for tok in (normalize_vpeval(w) for w in line.text.split()) if tok]
    words = [t for t, _ in stream]
    for start in range(len(words) - len(tokens) + 1):
        if words[start:start + len(tokens)] == tokens:
            lines = sorted({i for _, i in stream[start:start + len(tokens)]})
            return Answer(True, tuple(text[i].box for i in lines), explanation=f'"{target}" text found.')
    return Answer(False, explanation=f'No "{target}" text found (read: {text.summary()}).')


@tool(category="vpeval", literal_checks={"choices": _check_choices})
def vqa_eval(image: Image, question: str, choices: str, target: str, ctx: ToolContext = None) -> Answer:
    """Whether a VQA model, choosing among the choices, gives the target answer (VPEval vqa).

    The answer matches when it equals the target (case-insensitive). Count targets such as '>1'
    or '==3' are compared numerically when the answer is a number (digits or a word zero..ten).

    Args:
        image: The image the question is about.
        question: The question, e.g. 'How many dogs are there?'.
        choices: Comma-separated answer choices (at least 2), e.g. 'yes,no'.
        target: The expected answer, or a count comparison such as '>1'.

    Returns:
        Answer(True/False) whose explanation shows the question and the model's answer.
    """
    problem = _check_choices(choices)
    if problem:
        raise ToolArgumentError(problem)
    answer = ctx.call("ask", image=image, question=question, choices=choices)
    got = answer.strip().lower()
    want = target.strip().lower()
    ok = got == want
    numeric = as_number(answer)
    if not ok and _COUNT_RE.match(target) and numeric is not None:
        ok = count_matches(numeric, target)
    verdict = target if ok else f"not {target}"
    return Answer(ok, explanation=f"Q: {question} (choices: {choices}) A: {answer} -> {verdict}")


TOOLS = (object_eval, count_eval, spatial_eval, scale_eval, text_eval, vqa_eval)
