"""The planner's view of the registry: which tools it is offered, and what the value types expose.

Both the prompt (:mod:`vistrace.agent.prompt`) and the grammar (:mod:`vistrace.agent.grammar`) are
rendered from this view, so the model is told about exactly the tools the grammar lets it call.

Which tools are offered (a small model does better with fewer choices, and the 0.5B model has a
4k-token context):

- an **expert tool whose backends are all unavailable** here is left out (calling it could only fail
  with ``BackendUnavailable``); pass ``include_unavailable=True`` to keep it;
- tools of the categories in :data:`LEFT_OUT_CATEGORIES` are left out: the VPEval modules score a
  generated image against a prompt and image generation makes new pictures — neither answers a
  question about the given images, and their names (``vqa``, ``objectEval``) switch a program to
  the VPEval style; the image-to-3D tools (category ``3d``) build meshes, which
  ``programs/library/image_to_3d.vp`` runs, and would only lengthen a small model's prompt;
- a tool needing more image arguments than the request has image inputs is left out (e.g.
  ``stereo_depth`` with a single image), when the inputs are known.

Value members come from each value type's ``public`` set and the methods of plain data from
``sandbox.safety.SAFE_METHODS``: never a hand-kept list.
"""

from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass

from vistrace.signature import ParamSpec, type_name

LEFT_OUT_CATEGORIES: frozenset[str] = frozenset({"vpeval", "generation", "3d"})

# Plain data whose safe methods the planner is told about: str only (list/dict methods such as append
# need loops, which the plain-statement form does without; the grammar still allows them all).
PLAIN_METHOD_TYPES: tuple[type, ...] = (str,)


def tool_available(tool) -> bool:
    """A non-expert tool is always offered; an expert tool needs at least one available backend."""
    if not tool.expert:
        return True
    for b in tool.backends:
        try:
            if b.availability().ok:
                return True
        except Exception:  # noqa: BLE001 - a backend whose check breaks counts as unavailable
            continue
    return False


def tool_vocabulary(tool, param: str) -> tuple[str, ...] | None:
    """The words ``param`` of ``tool`` is understood in, when every available backend has a closed
    vocabulary there (their union, in order); None when some backend takes any word."""
    words: list[str] = []
    found = False
    for b in tool.backends:
        try:
            if not b.availability().ok:
                continue
            vocab = b.vocabulary().get(param)
        except Exception:  # noqa: BLE001 - a backend whose check breaks is not offered anyway
            continue
        if not vocab:
            return None
        found = True
        words += [w for w in vocab if w not in words]
    return tuple(words) if found else None


def _image_params(tool) -> int:
    return sum(1 for p in tool.params if p.required and type_name(p.annotation) == "Image")


def planner_tools(registry, inputs: dict[str, str] | None = None, *, include_unavailable: bool = False,
                  left_out_categories: frozenset[str] = LEFT_OUT_CATEGORIES) -> list:
    """The tools offered to the planner, in registry order (see the module docstring for the rules)."""
    n_images = None if inputs is None else sum(1 for t in inputs.values() if t == "Image")
    out = []
    for t in registry.tools():
        if t.category in left_out_categories:
            continue
        if not include_unavailable and not tool_available(t):
            continue
        if n_images is not None and _image_params(t) > max(n_images, 1):
            continue
        out.append(t)
    return out


def planner_aliases(registry, tools) -> list:
    """The aliases (VisProg, VPEval names) of the offered tools."""
    names = {t.name for t in tools}
    return [a for a in registry.aliases() if a.tool in names]


class OfferedTools:
    """The tools a planned program may call: exactly those offered to the planner and their aliases.

    A :class:`~vistrace.sandbox.interface.ToolTable` for the sandbox's ``check``: a name outside the
    offered set has no signature here, so a program calling it is rejected before running as an
    ``unknown tool`` — whatever the model read or was told (a tool left out of the prompt, one named by
    text in the image, one from another framework).  The prompt, the grammar and this table are made
    from the same :func:`planner_tools` list, so what the model is shown is what it may call.  The
    tools run from the full registry (a composite tool such as ``loc`` calls ``detect`` itself).
    """

    def __init__(self, registry, tools) -> None:
        self.registry = registry
        self.tools = tuple(t.name for t in tools)
        self.names = frozenset(self.tools) | {a.name for a in planner_aliases(registry, tools)}

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __repr__(self) -> str:
        return f"OfferedTools({', '.join(sorted(self.names))})"

    def signature(self, name: str):
        return self.registry.signature(name) if name in self.names else None

    def suggest(self, name: str) -> str | None:
        import difflib

        if self.registry.resolve(name) is not None:
            return (f"'{name}' is a tool of this installation but not one offered here (its backends are "
                    f"unavailable, or it does not answer questions about the given images); call only the "
                    f"tools listed in the prompt")
        close = difflib.get_close_matches(name, sorted(self.names), n=1, cutoff=0.6)
        if not close:
            lowered = {n.lower(): n for n in self.names}
            close = [lowered[name.lower()]] if name.lower() in lowered else []
        return f"did you mean '{close[0]}'?" if close else None


def offered_tools(registry, inputs: dict[str, str] | None = None) -> OfferedTools:
    """The :class:`OfferedTools` for a request with these inputs (name -> type name)."""
    return OfferedTools(registry, planner_tools(registry, inputs))


@dataclass(frozen=True)
class Member:
    """A public field or method of a value type, as the planner sees it."""

    name: str
    is_method: bool
    params: str = ""      # e.g. "name" or "key='score', descending=True"
    returns: str = ""     # the annotation text, '' when unknown

    def render(self) -> str:
        return f"{self.name}({self.params})" if self.is_method else self.name


def value_types() -> dict[str, type]:
    from vistrace.values import VALUE_TYPES

    return dict(VALUE_TYPES)


def members(cls: type) -> list[Member]:
    """The public members of a value type: fields first, then methods, each sorted by name."""
    fields, methods = [], []
    for name in sorted(cls.public):
        obj = inspect.getattr_static(cls, name, None)
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            parts = []
            for p in list(sig.parameters.values())[1:]:
                if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    continue
                parts.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
            ret = sig.return_annotation
            methods.append(Member(name, True, ", ".join(parts), "" if ret is sig.empty else str(ret)))
        else:
            ret = ""
            if isinstance(obj, property) and obj.fget is not None:
                ann = inspect.signature(obj.fget).return_annotation
                ret = "" if ann is inspect.Signature.empty else str(ann)
            fields.append(Member(name, False, "", ret))
    return fields + methods


def sequence_like(cls: type) -> bool:
    """Whether a value type supports ``len(x)``, ``x[i]`` and ``for v in x``."""
    return all(hasattr(cls, m) for m in ("__len__", "__getitem__", "__iter__"))


def _type_names_in(text: str, known: typing.Iterable[str]) -> set[str]:
    return {n for n in known if re.search(rf"\b{re.escape(n)}\b", text)}


def _annotation_text(p: ParamSpec | None, tp=None) -> str:
    return type_name(p.annotation if p is not None else tp)


def reachable_value_types(tools) -> list[str]:
    """Value types the offered tools take or return, plus those reachable through their members."""
    known = value_types()
    found: set[str] = set()
    for t in tools:
        for p in t.params:
            found |= _type_names_in(_annotation_text(p), known)
        found |= _type_names_in(type_name(t.returns), known)
    frontier = set(found)
    while frontier:
        nxt: set[str] = set()
        for name in frontier:
            for m in members(known[name]):
                nxt |= _type_names_in(m.returns, known) - found
        found |= nxt
        frontier = nxt
    return [n for n in known if n in found]


def all_member_names() -> list[str]:
    """Every name usable after a dot: public members of all value types and safe methods of plain data."""
    from vistrace.sandbox.safety import SAFE_METHODS

    names: set[str] = set()
    for cls in value_types().values():
        names |= set(cls.public)
    for methods in SAFE_METHODS.values():
        names |= set(methods)
    return sorted(n for n in names if not n.startswith("_"))


def plain_methods() -> dict[str, list[str]]:
    """Type name -> the methods of plain data a program may call (from the sandbox's list)."""
    from vistrace.sandbox.safety import SAFE_METHODS

    return {tp.__name__: sorted(SAFE_METHODS[tp]) for tp in PLAIN_METHOD_TYPES if tp in SAFE_METHODS}


def safe_builtins() -> list[str]:
    from vistrace.sandbox.safety import SAFE_BUILTINS

    return sorted(SAFE_BUILTINS)
