"""Declare a tool once — a typed function with a docstring — and derive everything else from it.

From the signature and docstring come: the JSON schema (for LLM function calling and the server),
argument validation (pydantic), the planner's stub text, the CLI help and the sandbox signature.
Registration is explicit (``Registry.add``); third-party tools arrive through the entry-point group
``vistrace.tools`` (each entry point is a callable taking the registry).
"""

from __future__ import annotations

import copy
import difflib
import inspect
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

from vistrace.errors import BackendUnavailable, ToolArgumentError, VistraceError
from vistrace.signature import ParamSpec, Signature, type_name

from .backends import Backend

ENTRY_POINT_GROUP = "vistrace.tools"
_HIDDEN_PARAMS = {"backend", "ctx"}


def _parse_docstring(doc: str) -> tuple[str, str, dict[str, str], str]:
    """Split a Google-style docstring into (summary, description, per-argument docs, returns doc)."""
    doc = inspect.cleandoc(doc or "")
    lines = doc.splitlines()
    summary = lines[0].strip() if lines else ""
    args: dict[str, str] = {}
    returns = ""
    body: list[str] = []
    section = None
    current = None
    for line in lines[1:]:
        stripped = line.strip()
        if stripped in ("Args:", "Arguments:", "Parameters:"):
            section, current = "args", None
            continue
        if stripped in ("Returns:", "Return:"):
            section, current = "returns", None
            continue
        if section == "args":
            m = re.match(r"^\s{2,}(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", line)
            if m:
                current = m.group(1)
                args[current] = m.group(2).strip()
            elif current and stripped:
                args[current] += " " + stripped
            elif not stripped:
                current = None
            continue
        if section == "returns":
            if stripped:
                returns = (returns + " " + stripped).strip()
            continue
        body.append(line)
    return summary, "\n".join(body).strip(), args, returns


@dataclass(frozen=True)
class Alias:
    """Another name for a tool, as used by a published program style (VisProg, VPEval).

    ``positional`` orders the alias' own positional arguments (alias names); ``renames`` maps alias
    keyword names to tool parameter names; ``presets`` fixes tool arguments.
    """

    name: str
    tool: str
    renames: dict[str, str] = field(default_factory=dict)
    presets: dict[str, Any] = field(default_factory=dict)
    style: str = ""
    doc: str = ""


class Tool:
    """A declared tool: the function, its parameters, its docs and its backends."""

    def __init__(self, func: Callable, *, name: str | None = None, category: str = "general",
                 version: str = "1", expert: bool = False,
                 literal_checks: dict[str, Callable[[Any], str | None]] | None = None,
                 unavailable_hint: str = "", precheck: Callable[[dict[str, Any]], None] | None = None):
        self.func = func
        self.precheck = precheck  # argument checks that need no backend: run before one is chosen
        self.unavailable_hint = unavailable_hint  # said when no backend can answer (e.g. a weight-free alternative)
        self.literal_checks = dict(literal_checks or {})
        self.wants_ctx = "ctx" in inspect.signature(func).parameters
        self.name = name or func.__name__
        self.category = category
        self.version = version
        self.expert = expert
        self.backends: list[Backend] = []
        self.summary, self.description, arg_docs, self.returns_doc = _parse_docstring(func.__doc__ or "")
        if not self.summary:
            raise VistraceError(f"tool '{self.name}' needs a docstring: its first line is the planner's description")
        hints = typing.get_type_hints(func)
        params = []
        for p in inspect.signature(func).parameters.values():
            if p.name in _HIDDEN_PARAMS:
                continue
            if p.name not in hints:
                raise VistraceError(f"tool '{self.name}': parameter '{p.name}' needs a type annotation")
            params.append(ParamSpec(p.name, hints[p.name], p.default, arg_docs.get(p.name, "")))
        if "return" not in hints:
            raise VistraceError(f"tool '{self.name}' needs a return annotation")
        self.params: tuple[ParamSpec, ...] = tuple(params)
        self.returns = hints["return"]
        self._model = None

    # derived views ----------------------------------------------------------------------
    def signature(self, alias: Alias | None = None) -> Signature:
        if alias is None:
            return Signature(self.name, self.name, self.params, self.returns, self.summary,
                             literal_checks=dict(self.literal_checks))
        return Signature(alias.name, self.name, self.params, self.returns, alias.doc or self.summary,
                         dict(alias.renames), dict(alias.presets), dict(self.literal_checks))

    def stub(self) -> str:
        """The planner's view: a Python def line with the docstring."""
        args = []
        for p in self.params:
            text = f"{p.name}: {type_name(p.annotation)}"
            if not p.required:
                text += f" = {p.default!r}"
            args.append(text)
        lines = [f"def {self.name}({', '.join(args)}) -> {type_name(self.returns)}:", f'    """{self.summary}']
        for p in self.params:
            if p.doc:
                lines.append(f"    {p.name}: {p.doc}")
        lines[-1] += '"""' if len(lines) == 2 else ""
        if len(lines) > 2:
            lines.append('    """')
        return "\n".join(lines)

    def json_schema(self) -> dict[str, Any]:
        """OpenAI-style function schema; value types appear as named references."""
        props: dict[str, Any] = {}
        required = []
        for p in self.params:
            prop = _json_type(p.annotation)
            if p.doc:
                prop["description"] = p.doc
            if not p.required:
                prop["default"] = p.default
            props[p.name] = prop
            if p.required:
                required.append(p.name)
        return {"name": self.name, "description": self.summary,
                "parameters": {"type": "object", "properties": props, "required": required},
                "returns": _json_type(self.returns)}

    def help(self) -> str:
        lines = [self.stub().splitlines()[0].removeprefix("def ").removesuffix(":"), "", self.summary]
        if self.description:
            lines += ["", self.description]
        if self.params:
            lines.append("")
            for p in self.params:
                default = "" if p.required else f" (default {p.default!r})"
                lines.append(f"  {p.name}: {type_name(p.annotation)}{default} — {p.doc}")
        if self.expert:
            lines.append("")
            names = ", ".join(b.name for b in self.backends) or "none installed"
            lines.append(f"backends: {names}")
        return "\n".join(lines)

    # validation and calling -------------------------------------------------------------
    def _arg_model(self):
        if self._model is None:
            from pydantic import ConfigDict, create_model

            fields = {p.name: (p.annotation, ... if p.required else p.default) for p in self.params}
            self._model = create_model(
                f"{self.name}_args", __config__=ConfigDict(arbitrary_types_allowed=True, strict=True, extra="forbid"), **fields)
        return self._model

    def validate(self, args: dict[str, Any]) -> dict[str, Any]:
        """Check arguments against the declared types; raises ToolArgumentError listing every problem."""
        from pydantic import ValidationError

        try:
            model = self._arg_model().model_validate(args)
        except ValidationError as exc:
            msgs = []
            for err in exc.errors():
                where = str(err["loc"][0]) if err["loc"] else "arguments"  # a union reports per member: name the argument
                param = self._param(str(err["loc"][0])) if err["loc"] else None
                expected = type_name(param.annotation) if param else "?"
                got = type(args.get(str(err["loc"][0]))).__name__ if err["loc"] else "?"
                if err["type"] == "missing":
                    msgs.append(f"missing required argument '{where}'")
                elif err["type"] == "extra_forbidden":
                    msgs.append(f"unknown argument '{where}'")
                else:
                    msgs.append(f"argument '{where}' of {self.name} expects {expected}, got {got}")
            raise ToolArgumentError("; ".join(dict.fromkeys(msgs)), where=None) from None
        return {p.name: getattr(model, p.name) for p in self.params}

    def _param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)

    def select_backend(self, args: dict[str, Any]) -> tuple[Backend, str]:
        """Pick the backend for these arguments; the reason is recorded in the trace."""
        also = f"; {self.unavailable_hint}" if self.unavailable_hint else ""
        if not self.backends:
            raise BackendUnavailable(
                f"tool '{self.name}' has no backend installed{also}",
                fix="install a package that provides one (entry point group 'vistrace.tools'); `vistrace tools` shows which tools have backends")
        refusals = []
        unsuited = []  # refusals of backends that are installed and configured
        candidates = []
        for b in sorted(self.backends, key=lambda b: -b.priority):
            avail = b.availability()
            if not avail.ok:
                refusals.append(f"{b.name}: {avail.reason}" + (f" — fix: {avail.fix}" if avail.fix else ""))
                continue
            ok, why = b.suits(args)
            if ok:
                candidates.append((b, why))
            else:
                refusals.append(f"{b.name}: {why}")
                unsuited.append(why)
        if not candidates:
            fixes = "; ".join(refusals)
            brief = None
            if unsuited and len(unsuited) < len(refusals):
                brief = f"{self.name} cannot answer these arguments: " + "; ".join(unsuited) + also
            raise BackendUnavailable(f"no backend of tool '{self.name}' can answer: {fixes}{also}",
                                     fix=next((b.availability().fix for b in self.backends if b.availability().fix), None),
                                     brief=brief)
        backend, why = candidates[0]
        others = [b.name for b, _ in candidates[1:]]
        if others:
            why += f" (preferred over {', '.join(others)})"
        skipped = [b.name for b in self.backends if b.priority > backend.priority and b not in dict(candidates)]
        if skipped:
            why += f"; not available or not suited: {', '.join(sorted(skipped))} (see `vistrace doctor`)"
        return backend, why

    def __call__(self, registry: "Registry | None" = None, **args: Any) -> Any:
        """Validate and run (experts through their selected backend). Returns the value only."""
        return self.invoke(args, registry)[0]

    def invoke(self, args: dict[str, Any], registry: "Registry | None" = None,
               cache: Any = None) -> tuple[Any, dict[str, str]]:
        """Validate and run; returns (value, info about who answered: backend, model, version, reason).

        Tools that declare a ``ctx`` parameter get a :class:`ToolContext` to call other tools of
        ``registry``; who answered those nested calls is merged into the returned info.
        Expert results are looked up in / stored to ``cache`` (a ResultCache) when one is given;
        ``info["cache_hit"]`` says whether the value came from it.
        """
        clean = self.validate(args)
        if self.precheck is not None:
            self.precheck(clean)
        extra: dict[str, Any] = {}
        ctx = None
        if self.wants_ctx:
            ctx = ToolContext(registry if registry is not None else default_registry(), cache)
            extra["ctx"] = ctx
        key = None
        if self.expert:
            backend, reason = self.select_backend(clean)
            extra["backend"] = backend
            info = {"backend": backend.name, "model": backend.model, "version": backend.version, "reason": reason}
            if cache is not None:
                key = cache.key(self.name, backend.name, f"{backend.model}@{backend.version}/{self.version}", clean)
                hit, value = cache.get(key)
                if hit:
                    return value, {**info, "cache_hit": "yes"}
        else:
            info = {"backend": "builtin", "model": "", "version": self.version, "reason": ""}
        value = self.func(**clean, **extra)
        if key is not None:
            cache.put(key, value)
        if ctx is not None and ctx.calls:
            info = ctx.merged_info(info)
        return value, info


class ToolContext:
    """Given to tools that call other tools (e.g. VPEval's objectEval calls detect)."""

    def __init__(self, registry: "Registry", cache: Any = None):
        self.registry = registry
        self.cache = cache
        self.calls: list[tuple[str, dict[str, str]]] = []

    def call(self, name: str, **args: Any) -> Any:
        t = self.registry.get(name)
        value, info = t.invoke(args, self.registry, self.cache)
        self.calls.append((t.name, info))
        return value

    def merged_info(self, own: dict[str, str]) -> dict[str, str]:
        parts = [f"{name}: {info.get('backend')}" + (f" ({info['reason']})" if info.get("reason") else "")
                 for name, info in self.calls]
        models = sorted({info["model"] for _, info in self.calls if info.get("model")})
        backends = sorted({info["backend"] for _, info in self.calls if info.get("backend")})
        if own.get("backend") not in (None, "", "builtin"):  # an expert backend that called tools: it answered
            models = list(dict.fromkeys([own["model"], *models] if own.get("model") else models))
            # its own answer was computed (a cached one returns before the backend runs): never a cache hit
            return {"backend": own["backend"], "model": ",".join(models), "version": own["version"],
                    "reason": "; ".join(x for x in (own.get("reason", ""), "using " + "; ".join(parts)) if x)}
        merged = {"backend": ",".join(backends) or own["backend"], "model": ",".join(models),
                  "version": own["version"], "reason": "; ".join(parts)}
        if self.calls and all(info.get("cache_hit") for _, info in self.calls):
            merged["cache_hit"] = "yes"
        return merged


def tool(name: str | None = None, *, category: str = "general", version: str = "1", expert: bool = False,
         literal_checks: dict[str, Callable[[Any], str | None]] | None = None, unavailable_hint: str = "",
         precheck: Callable[[dict[str, Any]], None] | None = None):
    """Declare a tool from a typed function with a docstring (registration stays explicit).

    ``literal_checks`` maps a parameter to a function that inspects a literal argument before the
    program runs and returns a problem message (or None): e.g. VPEval's ``'A,B,relation'`` strings.
    ``unavailable_hint`` is added to the error when no backend can answer (e.g. a weight-free tool to use instead).
    ``precheck(args)`` raises ToolArgumentError for bad arguments before a backend is chosen.
    """

    def wrap(func: Callable) -> Tool:
        return Tool(func, name=name, category=category, version=version, expert=expert, literal_checks=literal_checks,
                    unavailable_hint=unavailable_hint, precheck=precheck)

    return wrap


def _json_type(tp: Any) -> dict[str, Any]:
    simple = {str: "string", int: "integer", float: "number", bool: "boolean"}
    if tp in simple:
        return {"type": simple[tp]}
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin in (list, tuple):
        inner = typing.get_args(tp)
        return {"type": "array", "items": _json_type(inner[0]) if inner else {}}
    if origin is dict:
        return {"type": "object"}
    if origin is not None:  # unions
        return {"anyOf": [_json_type(a) for a in typing.get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    return {"type": "object", "x-vistrace-type": type_name(tp)}


class UnknownTool(VistraceError):
    """A name that is neither a tool nor an alias."""


class Registry:
    """The set of tools a run can use, with their aliases and backends."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}
        self._aliases: dict[str, Alias] = {}
        self._signatures: dict[str, Signature | None] = {}  # derived once per name; cleared on changes

    def add(self, t: Tool) -> Tool:
        """Register a tool.  The registry keeps its own copy, so backends added here stay here."""
        if not isinstance(t, Tool):
            raise TypeError(f"Registry.add expects a Tool (use the @tool decorator), got {type(t).__name__}")
        if t.name in self._tools or t.name in self._aliases:
            raise VistraceError(f"tool name '{t.name}' is already registered")
        own = copy.copy(t)
        own.backends = list(t.backends)
        self._tools[t.name] = own
        self._signatures.clear()
        return own

    def alias(self, name: str, tool_name: str, *, renames: dict[str, str] | None = None,
              presets: dict[str, Any] | None = None, style: str = "", doc: str = "") -> Alias:
        if tool_name not in self._tools:
            raise VistraceError(f"alias '{name}' points at unknown tool '{tool_name}'")
        if name in self._tools or name in self._aliases:
            raise VistraceError(f"name '{name}' is already registered")
        a = Alias(name, tool_name, dict(renames or {}), dict(presets or {}), style, doc)
        self._aliases[name] = a
        self._signatures.clear()
        return a

    def derived(self, transform: Callable[[Tool], Tool]) -> "Registry":
        """A new registry holding ``transform(tool)`` for each tool (copied) and the same aliases — e.g.
        the expert tools answered by a remote server, or backends wrapped for batching."""
        reg = Registry()
        for t in self.tools():
            reg.add(transform(t))
        for a in self.aliases():
            reg.alias(a.name, a.tool, renames=a.renames, presets=a.presets, style=a.style, doc=a.doc)
        return reg

    def add_backend(self, backend: Backend) -> None:
        self.get(backend.tool).backends.append(backend)

    def get(self, name: str) -> Tool:
        if name in self._tools:
            return self._tools[name]
        if name in self._aliases:
            return self._tools[self._aliases[name].tool]
        raise UnknownTool(f"unknown tool '{name}'", hint=self.suggest(name))

    def resolve(self, name: str) -> tuple[Tool, Alias | None] | None:
        if name in self._tools:
            return self._tools[name], None
        if name in self._aliases:
            a = self._aliases[name]
            return self._tools[a.tool], a
        return None

    def signature(self, name: str) -> Signature | None:
        try:
            return self._signatures[name]
        except KeyError:
            pass
        found = self.resolve(name)
        sig = None if found is None else found[0].signature(found[1])
        self._signatures[name] = sig
        return sig

    def suggest(self, name: str) -> str | None:
        close = difflib.get_close_matches(name, self.names(include_aliases=True), n=1, cutoff=0.6)
        if not close:
            lowered = {n.lower(): n for n in self.names(include_aliases=True)}
            close = [lowered[name.lower()]] if name.lower() in lowered else []
        return f"did you mean '{close[0]}'?" if close else None

    def names(self, include_aliases: bool = False) -> list[str]:
        names = list(self._tools)
        if include_aliases:
            names += list(self._aliases)
        return names

    def tools(self) -> list[Tool]:
        return list(self._tools.values())

    def aliases(self) -> list[Alias]:
        return list(self._aliases.values())

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Let installed plugins register their tools and backends; returns the plugin names loaded."""
        from importlib.metadata import entry_points

        loaded = []
        for ep in entry_points(group=group):
            try:
                register = ep.load()
                register(self)
            except VistraceError:
                raise
            except Exception as exc:  # noqa: BLE001 - a broken plugin is named, never skipped silently
                raise VistraceError(f"plugin '{ep.name}' ({ep.value}) failed to register its tools: "
                                    f"{type(exc).__name__}: {exc}",
                                    hint=f"fix or uninstall the package that provides entry point '{ep.name}'") from exc
            loaded.append(ep.name)
        return loaded


_DEFAULT: Registry | None = None


def default_registry(plugins: bool = True) -> Registry:
    """The built-in tools and aliases, the offline expert backends, the adapters for user-brought
    weights (available once configured), plus installed plugins (built once)."""
    global _DEFAULT
    if _DEFAULT is None:
        from .adapters import register_adapters
        from .builtin import register_builtin
        from .experts import register_experts

        reg = Registry()
        register_builtin(reg)
        register_experts(reg)
        register_adapters(reg)
        if plugins:
            reg.load_entry_points()
        _DEFAULT = reg
    return _DEFAULT
