"""Tool signatures as the sandbox sees them: parameter names, types, defaults, binding and type checks.

The tool layer derives a :class:`Signature` from each declared tool function; the sandbox's checker
and interpreter only ever see signatures, never the tools themselves.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Union

ANY = typing.Any
_MISSING = inspect.Parameter.empty


@dataclass(frozen=True)
class ParamSpec:
    name: str
    annotation: Any = ANY
    default: Any = _MISSING
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass(frozen=True)
class Signature:
    """What a callable name in a program accepts and returns.

    ``name`` is the name used in the program (maybe an alias); ``tool`` the canonical tool it runs.
    ``renames`` maps the alias' keyword names onto the tool's; ``presets`` fixes tool arguments.
    """

    name: str
    tool: str
    params: tuple[ParamSpec, ...]
    returns: Any = ANY
    doc: str = ""
    renames: dict[str, str] = field(default_factory=dict)
    presets: dict[str, Any] = field(default_factory=dict)
    literal_checks: dict[str, Any] = field(default_factory=dict)  # param -> fn(literal) -> problem | None

    def param(self, name: str) -> ParamSpec | None:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def bind(self, args: list, kwargs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Map positional and keyword arguments onto tool parameter names.

        Returns (bound arguments by tool parameter name, problems). Works on any objects, so the
        checker binds inferred types and the interpreter binds real values with the same rules.
        """
        problems: list[str] = []
        bound: dict[str, Any] = {}
        visible = [p for p in self.params if p.name not in self.presets]
        if len(args) > len(visible):
            problems.append(f"{self.name} takes at most {len(visible)} positional arguments, got {len(args)}")
        for p, a in zip(visible, args):
            bound[p.name] = a
        names = {p.name for p in self.params}
        alias_names = {alias for alias in self.renames}
        for key, val in kwargs.items():
            target = self.renames.get(key, key)
            if target not in names or (target in self.presets and key not in alias_names):
                choices = sorted({p.name for p in visible} | alias_names)
                close = difflib.get_close_matches(key, choices, n=1)
                hint = f" — did you mean '{close[0]}'?" if close else f" (accepted: {', '.join(choices)})"
                problems.append(f"{self.name} has no argument '{key}'{hint}")
                continue
            if target in bound:
                problems.append(f"{self.name} got argument '{key}' twice")
                continue
            bound[target] = val
        for key, val in self.presets.items():
            bound.setdefault(key, val)
        for p in self.params:
            if p.required and p.name not in bound:
                shown = next((a for a, t in self.renames.items() if t == p.name), p.name)
                problems.append(f"{self.name} is missing required argument '{shown}'")
        return bound, problems

    def stub(self) -> str:
        params = ", ".join(_param_text(p) for p in self.params if p.name not in self.presets)
        return f"{self.name}({params}) -> {type_name(self.returns)}"


def _param_text(p: ParamSpec) -> str:
    text = f"{p.name}: {type_name(p.annotation)}"
    if not p.required:
        text += f" = {p.default!r}"
    return text


def type_name(tp: Any) -> str:
    """Readable name of an annotation: ``Image``, ``list[str]``, ``Box | Detections``."""
    if tp is ANY or tp is _MISSING:
        return "Any"
    if tp is type(None) or tp is None:
        return "None"
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "Literal[" + ", ".join(repr(a) for a in typing.get_args(tp)) + "]"
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def accepts(annotation: Any, value_type: Any) -> bool | None:
    """Static check: may a value of ``value_type`` (a class, or Any) be passed where ``annotation`` is expected?

    Returns True/False, or None when it cannot be known before running.
    """
    if annotation is ANY or annotation is _MISSING or value_type is ANY or value_type is None:
        return None if value_type is ANY or value_type is None else True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        results = [accepts(a, value_type) for a in typing.get_args(annotation)]
        if any(r is True for r in results):
            return True
        return None if any(r is None for r in results) else False
    if origin is typing.Literal:
        lits = typing.get_args(annotation)
        return True if value_type in {type(v) for v in lits} else False
    target = origin or annotation
    if not isinstance(target, type):
        return None
    if target is float and value_type in (int, bool):
        return True
    try:
        return issubclass(value_type, target)
    except TypeError:
        return None


def check_value(annotation: Any, value: Any) -> bool:
    """Runtime check of a value against an annotation (containers checked one level deep)."""
    if annotation is ANY or annotation is _MISSING:
        return True
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(check_value(a, value) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None) or annotation is None:
        return value is None
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple)):
            return False
        inner = typing.get_args(annotation)
        if inner and origin is list and inner[0] is not Ellipsis:
            return all(check_value(inner[0], v) for v in value)
        return True
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True
