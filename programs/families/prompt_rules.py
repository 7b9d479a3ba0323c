"""A deterministic planner for text-to-image prompts: the VPEval skill program a prompt asks for.

Prompts of the public sets follow a few templates — "an image of ten dogs", "2 persons", "a horse on
the right of a car", "a sofa in front of a plate", "a cat bigger than a dog", "a sign that reads
'stop'", "a photo of a purple wine glass and a black apple". :func:`rules_program` turns them into
the VPEval-style program an LLM planner would write (objectEval / countEval / spatialEval /
scaleEval / textEval / vqa), or returns None when the prompt fits no template (then the LLM planner
writes it, see :mod:`.vpeval_planner`).

Argument order follows VPEval's published programs: ``spatialEval(image, 'A,B,rel')`` reads
"B is <rel> A" (PaintSkills' template "<objB> is <rel> <objA>"), so "a horse on the right of a car"
becomes ``spatialEval(image, 'car,horse,right')``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .vpeval_programs import quote

# GenEval's ten colours (djghosh13/geneval evaluation/evaluate_images.py, COLORS)
COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
_MORE_COLORS = ("gray", "grey", "silver", "gold", "golden")
NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
                "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}

# relation phrase -> VPEval relation word (longest phrases first when matching)
SPATIAL_PHRASES = {
    "on the left of": "left", "to the left of": "left", "on the left side of": "left", "left of": "left",
    "on the right of": "right", "to the right of": "right", "on the right side of": "right",
    "right of": "right",
    "on the top of": "above", "on top of": "above", "above": "above", "over": "above",
    "on the bottom of": "below", "at the bottom of": "below", "below": "below", "under": "below",
    "underneath": "below", "beneath": "below",
    "in front of": "front", "behind": "behind", "hidden by": "behind",
    "next to": "next to", "near": "near", "beside": "beside", "on the side of": "on the side of",
    "on side of": "on the side of",
}
SCALE_PHRASES = {"bigger than": "bigger", "larger than": "bigger", "smaller than": "smaller",
                 "the same size as": "same", "same size as": "same"}
MAX_OBJECT_WORDS = 3
_FRAMES = re.compile(r"^(?:an?\s+)?(?:photo|image|picture|painting|drawing|rendering|illustration)\s+of\s+")
_LEAD = re.compile(r"^(?:an?|the|some)\s+")
_AUX = re.compile(r"\s+(?:is|are|was|were|sits|sitting|standing|placed|located)$")
_QUOTED = re.compile(r"""(?:reads|reading|says|saying|written|with the text|with the words?)\s*:?\s*["'\u201c\u2018](.+?)["'\u201d\u2019]\s*\.?$""")
_IRREGULAR = {"people": "person", "persons": "person", "men": "man", "women": "woman", "children": "child",
              "mice": "mouse", "knives": "knife", "geese": "goose", "teeth": "tooth", "feet": "foot",
              "sheep": "sheep", "skis": "skis", "scissors": "scissors", "leaves": "leaf", "wolves": "wolf",
              "shelves": "shelf", "glasses": "glass", "buses": "bus", "boxes": "box", "benches": "bench",
              "sandwiches": "sandwich", "couches": "couch", "watches": "watch", "dishes": "dish"}


@dataclass(frozen=True)
class RulePlan:
    """A program for a prompt, with the skill it checks and the objects it names."""

    program: str
    skill: str
    objects: tuple[str, ...]
    sub: str | None = None


def singular(noun: str) -> str:
    """The singular of an English noun phrase's last word (common plural forms)."""
    words = noun.split()
    if not words:
        return noun
    last = words[-1]
    if last in _IRREGULAR:
        last = _IRREGULAR[last]
    elif last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif re.search(r"(ches|shes|sses|xes|zes)$", last):
        last = last[:-2]
    elif last.endswith("s") and not re.search(r"(ss|us|is)$", last) and len(last) > 2:
        last = last[:-1]
    return " ".join(words[:-1] + [last])


def _clean(text: str) -> str:
    text = text.strip().strip(".").strip()
    text = _AUX.sub("", text)
    return _LEAD.sub("", text).strip()


def _split_color(phrase: str) -> tuple[str | None, str]:
    words = phrase.split()
    colors = [w for w in words if w in COLORS or w in _MORE_COLORS]
    rest = " ".join(w for w in words if w not in COLORS and w not in _MORE_COLORS)
    return (colors[0] if colors else None), rest or phrase


def _count_part(part: str) -> tuple[int | None, str]:
    """(number or None for 'a'/'an'/none, noun phrase) of 'three dogs', '2 persons', 'a cat'."""
    m = re.match(r"^(\d+|" + "|".join(NUMBER_WORDS) + r"|an?|the|some)\s+(.+)$", part)
    if not m:
        return None, part
    word, rest = m.group(1), m.group(2)
    if word.isdigit():
        return int(word), rest
    return NUMBER_WORDS.get(word), rest


def _object_checks(phrase: str) -> tuple[list[str], str]:
    """objectEval (+ a colour vqa, + a countEval for 'two dogs') for one object phrase; (modules, name)."""
    text = _clean(phrase)
    explicit = re.match(r"^(\d+|" + "|".join(NUMBER_WORDS) + r")\s", text)
    number, text = _count_part(text)
    color, name = _split_color(text)
    name = singular(name)
    modules = [f"objectEval(image, {quote(name)})"]
    if color:
        modules.append(f"vqa(image, {quote(f'what color is the {name}?')}, {quote(','.join(COLORS))}, "
                       f"{quote(color)})")
    if explicit and number is not None:
        modules.append(f"countEval(objDet(image, {quote(name)}), '=={number}')")
    return modules, name


def _is_object(name: str) -> bool:
    """Whether a phrase looks like an object name (a short noun phrase), not a clause."""
    return bool(name) and len(name.split()) <= MAX_OBJECT_WORDS and not re.search(r"\b(while|with|of|in|on|at)\b", name)


def _relation(text: str, phrases: dict[str, str]) -> tuple[str, str, str] | None:
    for phrase in sorted(phrases, key=len, reverse=True):
        m = re.search(rf"\s{re.escape(phrase)}\s", f" {text} ")
        if m:
            left = text[:max(0, m.start() - 0)].strip()
            right = text[m.end() - 1:].strip()
            if left and right:
                return left, phrases[phrase], right
    return None


def rules_program(prompt: str) -> RulePlan | None:
    """The VPEval skill program for a templated prompt, or None when no template fits."""
    text = " ".join(str(prompt).lower().split()).strip().rstrip(".")
    if not text:
        return None
    quoted = _QUOTED.search(text) or re.search(r"""["'\u201c\u2018]([^"'\u201c\u201d\u2018\u2019]+)["'\u201d\u2019]""", text)
    if quoted and quoted.group(1).strip():
        words = str(prompt)[quoted.start(1):quoted.end(1)] if _QUOTED.search(text) else quoted.group(1)
        return RulePlan(f"textEval(ocr(image), {quote(words.strip())})", "text", ())
    text = _FRAMES.sub("", text)
    for phrases, module, skill in ((SCALE_PHRASES, "scaleEval", "scale"), (SPATIAL_PHRASES, "spatialEval", "spatial")):
        found = _relation(text, phrases)
        if found:
            subj_phrase, rel, ref_phrase = found
            subj_mods, subj = _object_checks(subj_phrase)
            ref_mods, ref = _object_checks(ref_phrase)
            if not _is_object(subj) or not _is_object(ref):
                return None  # clauses, not two objects: no template fits
            program = ";".join(subj_mods + ref_mods + [f"{module}(image, {quote(f'{ref},{subj},{rel}')})"])
            return RulePlan(program, skill, (subj, ref), sub=rel)
    parts = [p.strip() for p in re.split(r",\s*(?:and\s+)?|\s+and\s+", text) if p.strip()]
    modules: list[str] = []
    names: list[str] = []
    counted = None
    for part in parts:
        mods, name = _object_checks(part)
        if not _is_object(name):
            return None  # a clause, not an object: no template fits
        modules += mods
        names.append(name)
        count = next((m.rsplit("==", 1)[1].rstrip("')") for m in mods if m.startswith("countEval")), None)
        counted = count or counted
    if not names:
        return None
    skill = "count" if counted else "object"
    return RulePlan(";".join(modules), skill, tuple(names), sub=counted if len(names) == 1 else None)
