"""VPGen's two planning steps by a general LLM, grammar-constrained (VPGen fine-tuned Vicuna for them).

- ``plan_objects``: the LLM lists the objects and counts (``dog (2) cat (1)``); a GBNF grammar allows
  only that form.
- ``plan_layout``: the LLM places one box per planned instance; the grammar is built from the plan,
  so the object names and counts are fixed and the model only chooses the 100-bin coordinates. A
  layout with a box of no area (x1 = x2), or with two boxes stacked on each other (IoU >= 0.9, a
  small model copying the previous box), is drawn again, sampled with a new seed, at most twice.

The prompts are few-shot, written for this project. The LLM: ``[backends.vpgen_llm] llm = ...``
(env ``VISTRACE_VPGEN_LLM_LLM``), else ``$VISTRACE_LLM``, else ``local``.
"""

from __future__ import annotations

import inspect
from typing import Any

from vistrace.errors import ToolError
from vistrace.settings import declare_table

from ..builtin.vpgen import BINS, MAX_COUNT, check_layout, format_objects, parse_layout
from .llm_backend import LLMBackend, complete

SETTINGS_NAME = "vpgen_llm"
declare_table(SETTINGS_NAME)
VERSION = "3"
OBJECT_TOKENS = 48
BOX_TOKENS = 16  # per box: "name (12,34,56,78) "
RESAMPLES = 2    # a layout with a box of no area is drawn again, sampled, at most this many times
RESAMPLE_TEMPERATURE = 0.8
STACKED_IOU = 0.9  # boxes overlapping this much count as one box copied

OBJECTS_SYSTEM = ("List the objects a text-to-image prompt asks for, each with how many, as: name (count). "
                  "Use singular names. Leave out the background and places.")
OBJECTS_SHOTS = (("two dogs and a cat on a sofa", "dog (2) cat (1) couch (1)"),
                 ("a red car parked next to three bicycles", "car (1) bicycle (3)"),
                 ("an apple", "apple (1)"))
LAYOUT_SYSTEM = ("Place each object of a picture as a box x1,y1,x2,y2 on a 100 x 100 grid (0,0 is the top left). "
                 "Follow the prompt's counts and positions (left, right, above, below); "
                 "give objects realistic sizes; do not stack boxes exactly on top of each other.")
LAYOUT_SHOTS = (("a dog on the left of a cat", "dog (1) cat (1)", "dog (5,40,45,90) cat (55,45,92,90)"),
                ("three apples above a table", "apple (3) dining table (1)",
                 "apple (15,20,35,40) apple (40,18,60,38) apple (65,20,85,40) dining table (5,45,95,95)"))


def objects_grammar(max_objects: int = 6) -> str:
    """GBNF for 'name (count)' items separated by spaces."""
    return (f'root ::= item (" " item){{0,{max_objects - 1}}}\n'
            'item ::= name " (" count ")"\n'
            'name ::= [a-z] [a-z]{0,15} (" " [a-z] [a-z]{0,15})?\n'
            f'count ::= [1-9] | "1" [0-{min(9, MAX_COUNT - 10)}]\n')


def layout_grammar(objects: list[tuple[str, int]]) -> str:
    """GBNF for exactly the planned instances, in order, each with four 0..99 bin coordinates."""
    items = [name for name, count in objects for _ in range(count)]
    seq = ' " " '.join(f'"{name} (" box ")"' for name in items)
    return (f"root ::= {seq}\n"
            'box ::= n "," n "," n "," n\n'
            f'n ::= [0-9] | [1-9] [0-9]\n')


def objects_messages(prompt: str) -> list[tuple[str, str]]:
    pairs = [("system", OBJECTS_SYSTEM)]
    for p, a in OBJECTS_SHOTS:
        pairs += [("user", f"Prompt: {p}"), ("assistant", a)]
    return pairs + [("user", f"Prompt: {prompt}")]


def layout_messages(prompt: str, objects: list[tuple[str, int]]) -> list[tuple[str, str]]:
    pairs = [("system", LAYOUT_SYSTEM)]
    for p, o, a in LAYOUT_SHOTS:
        pairs += [("user", f"Prompt: {p}\nObjects: {o}"), ("assistant", a)]
    return pairs + [("user", f"Prompt: {prompt}\nObjects: {format_objects(objects)}")]


class ObjectPlanner(LLMBackend):
    """``plan_objects`` by a general LLM, constrained to VPGen's objects-and-counts form."""

    tool = "plan_objects"
    name = "vpgen_llm"
    settings_name = SETTINGS_NAME
    version = VERSION

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, f"vpgen_llm: {self.model} lists the objects and counts (few-shot, grammar-constrained)"

    def run(self, prompt: str, **_: Any) -> str:
        llm = self.llm()
        return complete(llm, objects_messages(prompt), grammar=self.grammar_for(objects_grammar()),
                        max_tokens=OBJECT_TOKENS, stop=["\n"])


class LayoutPlanner(LLMBackend):
    """``plan_layout`` by a general LLM: names and counts fixed by the grammar, the model picks the bins."""

    tool = "plan_layout"
    name = "vpgen_llm"
    settings_name = SETTINGS_NAME
    version = VERSION

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, f"vpgen_llm: {self.model} places the boxes on a {BINS}-bin grid (few-shot, grammar-constrained)"

    def run(self, prompt: str, objects: list[tuple[str, int]], width: int = 512, height: int = 512, **_: Any) -> str:
        """The layout text; a layout whose boxes have no area or break the plan is drawn again (sampled,
        a new seed) up to ``RESAMPLES`` times, and the last one is returned for the tool to reject; one
        with stacked boxes is drawn again too, and kept when the last draw is stacked as well."""
        llm = self.llm()
        n = sum(c for _, c in objects)
        grammar = self.grammar_for(layout_grammar(objects))
        text = ""
        for attempt in range(1 + RESAMPLES):
            kw: dict[str, Any] = {"temperature": 0.0 if attempt == 0 else RESAMPLE_TEMPERATURE}
            if attempt and "seed" in inspect.signature(llm.complete).parameters:
                kw["seed"] = attempt
            text = complete(llm, layout_messages(prompt, objects), grammar=grammar, max_tokens=BOX_TOKENS * n + 8,
                            stop=["\n"], **kw)
            try:
                layout = parse_layout(text, width, height)
                check_layout(layout, objects)
            except ToolError:
                continue
            if stacked(layout) and attempt < RESAMPLES:
                continue  # two instances in one box: legal, but the prompt's relations cannot hold
            return text
        return text


def stacked(layout, iou: float = STACKED_IOU) -> bool:
    """Whether two boxes of a layout (nearly) coincide — small models copy the previous box."""
    boxes = list(layout)
    return any(a.iou(b) >= iou for i, a in enumerate(boxes) for b in boxes[i + 1:])


def backends():
    return [ObjectPlanner(), LayoutPlanner()]
