"""Given the value types and tool signatures, when the planner's type view reads them, then every
field, method, index and slice has the type the values really return, and expressions are typed the
same way."""

from __future__ import annotations

import ast
import typing

import pytest
from vistrace.agent.typeview import (
    ANY_KEY,
    accepted_keys,
    closure,
    expr_type,
    key_of,
    steps,
)

from vistrace.values import Box, Detections, Image, TextLine, TextLines


@pytest.mark.parametrize("annotation, key", [
    (Image, "Image"), (Detections, "Detections"), (str, "str"), (int, "int"), (float, "float"), (bool, "bool"),
    (type(None), "none"), (list[str], "list[str]"), (tuple[Box, ...], "list[Box]"), (tuple[float, float], "list[float]"),
    (tuple[str, float], "tuple"), (list, "list"), (dict[str, int], "dict"), (float | None, "float"),
    (Box | Detections, ANY_KEY), ("'Detections'", "Detections"), (typing.Any, ANY_KEY), (typing.Iterator[Box], "list[Box]"),
])
def test_key_of(annotation, key):
    assert key_of(annotation) == key


@pytest.mark.parametrize("annotation, taken", [
    (Image, ({"Image"}, False)), (Box | Detections, ({"Box", "Detections"}, False)),
    (Box | Detections | None, ({"Box", "Detections"}, True)), (str, ({"str"}, False)), (float, ({"int", "float"}, False)),
    (int, ({"int"}, False)), (list[float] | None, None), (Detections | TextLines | list, None), (bool, None),
    (typing.Literal["TOP", "LEFT"], None), (typing.Any, None), (str | Image, None),
])
def test_accepted_keys(annotation, taken):
    got = accepted_keys(annotation)
    assert (None if got is None else (set(got[0]), got[1])) == taken


def _step(key, kind, name=""):
    return next(s for s in steps(key) if s.kind == kind and s.name == name)


@pytest.mark.parametrize("key, kind, name, result", [
    ("Detections", "method", "best", "Box"), ("Detections", "field", "count", "int"),
    ("Detections", "field", "labels", "list[str]"), ("Detections", "method", "above", "Detections"),
    ("Detections", "index", "", "Box"), ("Detections", "slice", "", "Detections"), ("Box", "field", "x1", "float"),
    ("Box", "field", "label", "str"), ("TextLines", "method", "find", "TextLines"), ("TextLines", "index", "", "TextLine"),
    ("TextLines", "field", "boxes", "Detections"), ("TextLine", "field", "text", "str"), ("Labels", "field", "top", "str"),
    ("Image", "field", "width", "int"), ("str", "method", "split", "list[str]"), ("str", "method", "lower", "str"),
    ("list[str]", "index", "", "str"), ("list[Box]", "slice", "", "list[Box]"),
])
def test_steps_follow_the_declared_types(key, kind, name, result):
    assert _step(key, kind, name).result == result


def test_the_declared_types_are_the_runtime_types():
    """Given real values, when a member is read, then its Python type matches the step's key."""
    b = Box(1, 2, 30, 40, label="cat", score=0.9)
    dets = Detections([b, Box(50, 2, 60, 40, label="dog", score=0.5)])
    lines = TextLines([TextLine("TOTAL 9.00", b)])
    plain = {"int": int, "float": float, "str": str, "bool": bool}
    for value, key in ((b, "Box"), (dets, "Detections"), (lines, "TextLines")):
        for s in steps(key):
            if s.kind == "field" and s.result in plain:
                got = getattr(value, s.name)
                assert isinstance(got, plain[s.result]), (key, s.name, type(got))
    assert isinstance(dets[0], Box) and isinstance(lines[0], TextLine) and isinstance(dets.best(), Box)


def test_nothing_follows_plain_numbers():
    assert steps("int") == () and steps("bool") == ()
    assert {"Box", "str", "float"} <= closure(["Detections"])


@pytest.mark.parametrize("source, key", [
    ("detect(image, 'cat')", "Detections"), ("detect(image, 'cat').best()", "Box"), ("dets[0].label", "str"),
    ("dets.count", "int"), ("dets.count / 2", "float"), ("dets.count + 1", "int"), ("len(dets) > 0", "bool"),
    ("ocr(image).find('total')[0].text", "str"), ("f'{n}'", "str"), ("'a' + 'b'", "str"), ("[1, 2]", "list[int]"),
    ("n if n else 'x'", ANY_KEY), ("unknown", ANY_KEY), ("dets.nope", ANY_KEY), ("not n", "bool"), ("len(dets)", "int"),
])
def test_expr_type(source, key):
    env = {"image": "Image", "dets": "Detections", "n": "int"}
    tools = {"detect": "Detections", "ocr": "TextLines"}
    assert expr_type(ast.parse(source, mode="eval").body, env, tools) == key
