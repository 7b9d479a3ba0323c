"""Given program text in each published style, when parsed, then the style and inputs are recognised."""

from __future__ import annotations

import pytest

from vistrace.errors import ProgramError
from vistrace.sandbox import Limits, check, parse

VISPROG = """BOX0=LOC(image=IMAGE,object='dog')
ANSWER0=COUNT(box=BOX0)
FINAL_RESULT=RESULT(var=ANSWER0)"""

VPEVAL = "objectEval(image, 'dog');countEval(objDet(image, 'dog'), '==3')"

FUNCTION = '''
def textcot(image: Image, question: str, zoom_size: int = 448) -> str:
    """TextCoT: overview, coarse localization, zoomed observation."""
    return question
'''


@pytest.mark.parametrize("source, style", [(VISPROG, "visprog"), (VPEVAL, "vpeval"), (FUNCTION, "function"),
                                           ("x = 1\ny = x + 1", "script")])
def test_style_is_detected(source, style):
    assert parse(source).style == style


def test_function_inputs_come_from_the_signature():
    prog = parse(FUNCTION)
    assert prog.name == "textcot"
    assert prog.doc.startswith("TextCoT")
    assert [(i.name, i.annotation, i.required) for i in prog.inputs] == [
        ("image", "Image", True), ("question", "str", True), ("zoom_size", "int", False)]


def test_script_inputs_are_the_free_names():
    from vistrace.tools import default_registry

    prog = parse(VISPROG)
    check(prog, default_registry())
    assert [i.name for i in prog.inputs] == ["IMAGE"]
    prog = parse(VPEVAL)
    check(prog, default_registry())
    assert [i.name for i in prog.inputs] == ["image"]


@pytest.mark.parametrize("source, hint_part", [
    ("objectEval(image, 'train conductor's hat')", "conductor's"),
    ("count = countEval(objDet(image, 'banana'), '>1');if count == 2:;    vqa(image, 'q', 'yes,no', 'yes')",
     "';'-separated"),
    ("x = add(1,", "not closed"),
])
def test_syntax_errors_are_problems_with_position_and_hint(source, hint_part):
    with pytest.raises(ProgramError) as info:
        parse(source)
    (problem,) = info.value.problems
    assert problem.line == 1 and problem.col >= 0
    assert problem.message.startswith("syntax error")
    assert hint_part in (problem.hint or "")


def test_oversized_and_overnested_programs_are_rejected():
    with pytest.raises(ProgramError, match="limit is 10"):
        parse("x = 1 + 2 + 3", limits=Limits(max_source_chars=10))
    for deep in ("x = " + "[" * 100 + "]" * 100, "x = " + "-" * 5000 + "1"):
        with pytest.raises(ProgramError, match="nests"):
            parse(deep)


def test_program_file_is_read(tmp_path):
    f = tmp_path / "count_dogs.vp"
    f.write_text(VISPROG)
    prog = parse(f)
    assert prog.name == "count_dogs" and prog.path == str(f)
    with pytest.raises(ProgramError, match="not found"):
        parse(tmp_path / "missing.vp")
