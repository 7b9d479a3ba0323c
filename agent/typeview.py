"""The planner's view of types: what each value and plain type exposes, and what each step returns.

The statement-at-a-time grammar (:mod:`vistrace.agent.typed_grammar`) needs to know, for an
expression it lets the model write, which type it has: a variable's type, a tool's return type, the
type a field or method of a value returns, and what indexing a sequence gives. Types are named by
short **keys**: a value type's name (``Image``, ``Detections``), a plain type (``str``, ``int``,
``float``, ``bool``, ``dict``, ``tuple``, ``none``), a typed list (``list[Box]``, ``list[str]``),
``list`` when the items are unknown, and ``any`` when nothing is known.

Everything is read from declarations: tool signatures, the value types' ``public`` sets, their
field annotations, property and method annotations and ``__iter__`` item types, and the sandbox's
safe methods of plain data. :func:`expr_type` infers the key of a parsed expression the same way,
so the type a variable gets after a statement is the one the grammar meant.
"""

from __future__ import annotations

import ast
import collections.abc
import inspect
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

ANY_KEY = "any"
PLAIN_KEYS = ("str", "int", "float", "bool", "none", "dict", "tuple", "list")
NUMBER_KEYS = ("int", "float")

# Return keys of the safe str methods (sandbox.safety.SAFE_METHODS[str]); a method not named here gives str.
_STR_RETURNS = {"split": "list[str]", "rsplit": "list[str]", "splitlines": "list[str]", "partition": "tuple",
                "rpartition": "tuple", "find": "int", "rfind": "int", "count": "int", "index": "int",
                "startswith": "bool", "endswith": "bool", "isdigit": "bool", "isnumeric": "bool",
                "isalpha": "bool", "isalnum": "bool", "isspace": "bool"}
# Methods of plain containers usable in an expression (the growing ones make no sense in `x = ...`).
_CONTAINER_METHODS = {"list": {"index": "int", "count": "int"}, "tuple": {"index": "int", "count": "int"},
                      "dict": {"get": ANY_KEY, "keys": "list", "values": "list", "items": "list"}}
_BUILTIN_RETURNS = {"len": "int", "str": "str", "int": "int", "float": "float", "bool": "bool", "list": "list",
                    "dict": "dict", "sorted": "list", "tuple": "tuple", "any": "bool", "all": "bool",
                    "range": "list", "enumerate": "list", "zip": "list", "reversed": "list", "set": ANY_KEY}


def value_classes() -> dict[str, type]:
    from vistrace.values import VALUE_TYPES

    return dict(VALUE_TYPES)


def _forward(name: str):
    name = name.strip().strip("'\"")
    classes = value_classes()
    if name in classes:
        return classes[name]
    return {"str": str, "int": int, "float": float, "bool": bool, "None": type(None)}.get(name, ANY_KEY)


def key_of(annotation: Any) -> str:
    """The key of an annotation (a return or field type): ``any`` for what cannot be followed."""
    if isinstance(annotation, str):
        annotation = _forward(annotation)
        if annotation == ANY_KEY:
            return ANY_KEY
    if isinstance(annotation, typing.ForwardRef):
        return key_of(annotation.__forward_arg__)
    if annotation is None or annotation is type(None):
        return "none"
    if isinstance(annotation, type):
        if getattr(annotation, "type_name", None) in value_classes():
            return annotation.type_name
        for plain in (bool, int, float, str, dict, tuple, list):
            if annotation is plain:
                return plain.__name__
        return ANY_KEY
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        keys = {key_of(a) for a in args if a is not type(None)}
        return keys.pop() if len(keys) == 1 else ANY_KEY
    if origin in (list, tuple, collections.abc.Sequence, collections.abc.Iterator, collections.abc.Iterable):
        items = [a for a in args if a is not Ellipsis]
        keys = {key_of(a) for a in items}
        if len(keys) == 1 and (origin is not tuple or Ellipsis in args or len(items) > 1):
            item = keys.pop()
            return f"list[{item}]" if item != ANY_KEY else "list"
        return "tuple" if origin is tuple else "list"
    if origin is dict:
        return "dict"
    return ANY_KEY


# What a parameter of a plain type takes (as ``vistrace.signature.accepts`` judges it: an int is a float).
_PLAIN_TAKES = {str: ("str",), int: ("int",), float: ("int", "float")}


def accepted_keys(annotation: Any) -> tuple[frozenset[str], bool] | None:
    """For a parameter: (the keys it takes, whether None is allowed), or None when any expression may
    do (a list, a bool, a mix of plain and value types, ``Any``)."""
    if typing.get_origin(annotation) is typing.Literal:
        return None
    parts = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    keys, optional = set(), False
    for p in parts:
        if p is type(None):
            optional = True
            continue
        if p in _PLAIN_TAKES:
            keys.update(_PLAIN_TAKES[p])
            continue
        k = key_of(p)
        if k not in value_classes():
            return None
        keys.add(k)
    if keys & {"str", "int", "float"} and keys - {"str", "int", "float"}:
        return None
    return (frozenset(keys), optional) if keys else None


@dataclass(frozen=True)
class Step:
    """One way to go on from a value of some type: ``.field``, ``.method(...)``, ``[i]`` or ``[a:b]``."""

    kind: str                 # "field" | "method" | "index" | "slice"
    name: str = ""
    result: str = ANY_KEY
    params: tuple = ()        # method parameters: (name, annotation, has_default), typed methods only
    typed: bool = False       # whether ``params`` describes the method (else any arguments)


def _member_annotation(cls: type, name: str):
    """(is_method, params, return annotation) of a public member of a value type."""
    obj = inspect.getattr_static(cls, name, None)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if inspect.isfunction(obj):
        hints = _hints(obj)
        sig = inspect.signature(obj)
        params = tuple((p.name, hints.get(p.name, Any), p.default is not p.empty)
                       for p in list(sig.parameters.values())[1:]
                       if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        return True, params, hints.get("return", Any)
    if isinstance(obj, property) and obj.fget is not None:
        return False, (), _hints(obj.fget).get("return", Any)
    return False, (), _hints(cls).get(name, Any)


def _hints(obj) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj)
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is simply unknown
        return {}


@cache
def steps(key: str) -> tuple[Step, ...]:
    """Every way to go on from a value of type ``key`` (``any``: every member name, any index)."""
    from vistrace.sandbox.safety import SAFE_METHODS

    classes = value_classes()
    if key in classes:
        cls = classes[key]
        out = []
        for name in sorted(cls.public):
            is_method, params, ret = _member_annotation(cls, name)
            out.append(Step("method" if is_method else "field", name, key_of(ret), params, typed=True))
        it = _hints(getattr(cls, "__iter__", None)).get("return") if hasattr(cls, "__iter__") else None
        if it is not None and hasattr(cls, "__getitem__"):
            item = key_of(it)
            out.append(Step("index", result=item[5:-1] if item.startswith("list[") else ANY_KEY))
            out.append(Step("slice", result=key))
        return tuple(out)
    if key == "str":
        return tuple(Step("method", m, _STR_RETURNS.get(m, "str")) for m in sorted(SAFE_METHODS[str])) + (
            Step("index", result="str"), Step("slice", result="str"))
    if key.startswith("list[") or key in ("list", "tuple"):
        item = key[5:-1] if key.startswith("list[") else ANY_KEY
        base = "tuple" if key == "tuple" else "list"
        methods = tuple(Step("method", m, r) for m, r in sorted(_CONTAINER_METHODS[base].items()))
        return methods + (Step("index", result=item), Step("slice", result=key))
    if key == "dict":
        return tuple(Step("method", m, r) for m, r in sorted(_CONTAINER_METHODS["dict"].items())) + (
            Step("index", result=ANY_KEY),)
    if key == ANY_KEY:
        from .toolset import all_member_names

        return tuple(Step("member", m) for m in all_member_names()) + (Step("index"), Step("slice"))
    return ()   # int, float, bool, none: nothing follows


def closure(keys) -> set[str]:
    """The keys reachable from ``keys`` through steps (including themselves)."""
    seen, todo = set(), list(keys)
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        todo.extend(s.result for s in steps(k) if s.result not in seen)
    return seen


def builtin_returns() -> dict[str, str]:
    """The key each safe builtin returns (``any`` when it depends on the arguments, e.g. ``max``)."""
    from .toolset import safe_builtins

    return {b: _BUILTIN_RETURNS.get(b, ANY_KEY) for b in safe_builtins()}


# ------------------------------------------------------------------------------ inference
def expr_type(node: ast.expr, env: dict[str, str], tools: dict[str, str]) -> str:
    """The key of a parsed expression. ``env``: variable -> key; ``tools``: callable name -> return key."""
    if isinstance(node, ast.Constant):
        v = node.value
        return "none" if v is None else {bool: "bool", int: "int", float: "float", str: "str"}.get(type(v), ANY_KEY)
    if isinstance(node, ast.Name):
        return env.get(node.id, ANY_KEY)
    if isinstance(node, ast.JoinedStr):
        return "str"
    if isinstance(node, ast.List):
        keys = {expr_type(e, env, tools) for e in node.elts}
        return f"list[{keys.pop()}]" if len(keys) == 1 and ANY_KEY not in keys else "list"
    if isinstance(node, ast.Tuple):
        return "tuple"
    if isinstance(node, ast.Dict):
        return "dict"
    if isinstance(node, ast.Compare) or (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
        return "bool"
    if isinstance(node, ast.UnaryOp):
        return expr_type(node.operand, env, tools)
    if isinstance(node, ast.BinOp):
        a, b = expr_type(node.left, env, tools), expr_type(node.right, env, tools)
        if isinstance(node.op, ast.Div) and a in NUMBER_KEYS and b in NUMBER_KEYS:
            return "float"
        if a in NUMBER_KEYS and b in NUMBER_KEYS:
            return "float" if "float" in (a, b) else "int"
        if isinstance(node.op, ast.Add) and a == b == "str":
            return "str"
        return ANY_KEY
    if isinstance(node, ast.IfExp):
        a, b = expr_type(node.body, env, tools), expr_type(node.orelse, env, tools)
        return a if a == b else ANY_KEY
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            return tools.get(node.func.id, builtin_returns().get(node.func.id, ANY_KEY))
        if isinstance(node.func, ast.Attribute):
            return _follow(expr_type(node.func.value, env, tools), "method", node.func.attr)
        return ANY_KEY
    if isinstance(node, ast.Attribute):
        return _follow(expr_type(node.value, env, tools), "field", node.attr)
    if isinstance(node, ast.Subscript):
        kind = "slice" if isinstance(node.slice, ast.Slice) else "index"
        return _follow(expr_type(node.value, env, tools), kind)
    return ANY_KEY


def _follow(key: str, kind: str, name: str = "") -> str:
    for s in steps(key):
        if s.kind in (kind, "member") and s.name == name:
            return s.result
    return ANY_KEY


__all__ = ["ANY_KEY", "Step", "accepted_keys", "builtin_returns", "closure", "expr_type", "key_of", "steps",
           "value_classes"]
