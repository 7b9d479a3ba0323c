"""The steps an answer cites: a backward slice from the result over the program, in every style."""

from __future__ import annotations

from pathlib import Path

import pytest

from vistrace.api import run as run_program
from vistrace.agent.evidence import cited_steps
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "examples" / "images" / "chelsea.jpg"


@pytest.fixture(scope="module")
def reg():
    r = Registry()
    register_builtin(r)
    return r


@pytest.mark.parametrize("program, tools, cited", [
    # only the result's chain, not the side branch
    ("a = box(0, 0, 9, 9)\nside = crop(image, a)\nb = box(0, 0, 50, 40)\nresult = crop(image, b).width",
     ["box", "crop", "box", "crop"], (3, 4)),
    # a later assignment replaces the earlier value of the same name
    ("b = box(0, 0, 9, 9)\nx = crop(image, b)\nb = box(0, 0, 50, 40)\nresult = zoom(image, b).width",
     ["box", "crop", "box", "zoom"], (3, 4)),
    # the last expression is the result when nothing is named result
    ("b = box(0, 0, 50, 40)\nunused = box(1, 1, 2, 2)\ncrop(image, b).width", ["box", "box", "crop"], (1, 3)),
    # a loop that builds the result rests on every step inside it
    ("n = 0\nfor k in range(2):\n    n = n + crop(image, box(0, 0, 10 + k, 10)).width\nresult = n",
     ["box", "crop", "box", "crop"], (1, 2, 3, 4)),
    # a constant result rests on no step
    ("b = box(0, 0, 50, 40)\nresult = 7", ["box"], ()),
])
def test_script_programs_cite_the_result_chain(reg, program, tools, cited):
    """Given a script program, when run, then the cited steps are those the `result` value depends on."""
    run = run_program(program, registry=reg, cache=False, image=str(IMAGE))
    assert run.ok, run.error
    assert [s.tool for s in run.trace.steps] == tools
    assert cited_steps(run) == cited


def test_visprog_result_follows_eval_string_names(reg):
    """Given VisProg's halves program (EVAL reads {IMAGE0} and {IMAGE1} inside its string),
    when run, then RESULT rests on LOC and both crops."""
    run = run_program(ROOT / "examples" / "visprog_halves.vp", registry=reg, cache=False, IMAGE=str(IMAGE))
    assert run.ok and cited_steps(run) == tuple(s.id for s in run.trace.steps)


def test_function_programs_cite_what_the_return_uses(reg):
    """Given a function-style program, when run, then the return rests on its box and zoom steps."""
    prog = ("def f(image: Image) -> int:\n    a = box(0, 0, 9, 9)\n    other = crop(image, a)\n"
            "    r = box(0, 0, 40, 40)\n    return zoom(image, r).width\n")
    run = run_program(prog, registry=reg, cache=False, image=str(IMAGE))
    assert run.ok and [s.tool for s in run.trace.steps] == ["box", "crop", "box", "zoom"]
    assert cited_steps(run) == (3, 4)


def test_failed_steps_are_never_cited(reg):
    """Given a run that failed, when citing, then no failed step is cited."""
    run = run_program("b = box(5, 5, 1, 1)\nresult = crop(image, b)", registry=reg, cache=False, image=str(IMAGE))
    assert not run.ok and cited_steps(run) == ()
