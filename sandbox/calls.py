"""Compiling calls: program functions, VisProg's RESULT/EVAL, builtins and tools.

What a call names is resolved once, at compile time; the closures reach the current run's
interpreter through the compiler (``comp.interp``), so compiled code is reused across runs.
"""

from __future__ import annotations

import ast
from time import monotonic

from typing import Any

from vistrace.errors import LimitExceeded, RuntimeProgramError, ToolArgumentError

from .compiler import SIZED, Compiler, Fn, Pending, loc
from .guards import argument_guard
from .interface import CallSite
from .limits import _ELEMENT_BYTES, _NESTED as NESTED
from .safety import COMPARING_METHODS, GROWING_METHODS, SAFE_BUILTINS

GUARDED = frozenset((*NESTED, range))  # argument types measured before a callee walks them


def compile_call(comp: Compiler, node: ast.Call) -> Fn:
    func = node.func
    if isinstance(func, ast.Attribute):
        return method_call(comp, node)
    if not isinstance(func, ast.Name):
        return comp.refuse(node, "only tools, builtins, program functions and value methods can be called")
    if any(kw.arg is None for kw in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
        return comp.refuse(node, "argument unpacking is not allowed")
    name = func.id
    if name in comp.program.functions:
        args = [comp.expr(a) for a in node.args]
        kwargs = [(kw.arg, comp.expr(kw.value)) for kw in node.keywords]
        return lambda env: comp.interp.call_function(name, [f(env) for f in args], {k: f(env) for k, f in kwargs},
                                                     node)
    if name == "RESULT":
        var = node.args[0] if node.args else next(kw.value for kw in node.keywords if kw.arg == "var")
        value = comp.expr(var)

        def result(env):
            interp = comp.interp
            interp.result, interp.result_set = value(env), True
            return interp.result
        return result
    if name == "EVAL":
        expr = node.args[0] if node.args else next(kw.value for kw in node.keywords if kw.arg == "expr")
        text = comp.expr(expr)
        return lambda env: comp.interp.special_eval(text(env), env, node)
    if name in SAFE_BUILTINS:
        return builtin_call(comp, node, name)
    sig = comp.tools.signature(name) if comp.tools is not None else None
    if sig is None:
        hint = comp.tools.suggest(name) if comp.tools is not None else None
        return comp.refuse(node, f"unknown tool '{name}'", hint)
    return tool_call(comp, node, sig)


def tool_call(comp: Compiler, node: ast.Call, sig) -> Fn:
    binding = bind_tool(comp, node, sig)
    if isinstance(binding, str):
        message = binding

        def bad(env):
            raise ToolArgumentError(message, where=loc(node, tool=sig.tool))
        return bad
    plan, presets = binding
    exprs = {("pos", i): a for i, a in enumerate(node.args)}
    exprs.update({("kw", kw.arg): kw.value for kw in node.keywords})
    fixed = dict(presets)  # literal arguments are bound once, at compile time
    fill = []
    for param, ref in plan:
        arg = exprs[(ref.kind, ref.key)]
        if isinstance(arg, ast.Constant):
            fixed[param] = arg.value
        else:
            fill.append((param, comp.expr(arg, lazy=True)))
    site = call_site(comp, node)
    name = node.func.id

    def call(env):
        if name in env:
            raise RuntimeProgramError(f"'{name}' is a variable, not a tool", where=loc(node))
        args = dict(fixed)
        interp = comp.interp
        b = interp.budget
        for param, f in fill:
            v = args[param] = f(env)
            if type(v) in GUARDED:
                argument_guard(b, v, node)  # tools hash, validate and record their arguments
        b.tool_calls += 1
        if b.tool_calls > b._max_tool_calls or monotonic() > b._deadline:
            b.after_tool_call(node)
        caller = interp.caller
        step = caller.begin(sig, site)
        if interp.pool is None:
            try:
                return caller.call(step, sig, args)
            except Exception as exc:  # noqa: BLE001 - located and typed by invoke's rules
                raise interp.locate_tool_error(exc, step, sig, node) from exc
        future = interp.pool.submit(interp.invoke_pending, step, sig, args, node)
        interp.futures.append(future)
        return Pending(future)
    return call


def call_site(comp: Compiler, node: ast.Call) -> CallSite:
    stmt = comp.current_stmt
    target = None
    if isinstance(stmt, ast.Assign) and stmt.value is node and len(stmt.targets) == 1 \
            and isinstance(stmt.targets[0], ast.Name):
        target = stmt.targets[0].id
    return CallSite(node.lineno, node.col_offset, getattr(node, "end_lineno", None),
                    comp.segment(stmt) if stmt is not None else "", target)


def method_call(comp: Compiler, node: ast.Call) -> Fn:
    func = node.func
    owner = comp.expr(func.value)
    args = [comp.expr(a) for a in node.args]
    kwargs = [(kw.arg, comp.expr(kw.value)) for kw in node.keywords]
    name = func.attr
    c = comp
    grows = name in GROWING_METHODS
    compares = name in COMPARING_METHODS
    walks = name not in ("append", "insert")

    def run(env):
        obj = owner(env)
        budget = c.budget
        method = c.interp.attribute(obj, func, call=True)
        a = [f(env) for f in args]
        k = {key: f(env) for key, f in kwargs}
        deep = 0
        if walks:  # append/insert only store a reference; other methods hash, compare or copy arguments
            for v in a:
                if type(v) in GUARDED:
                    deep = max(deep, argument_guard(budget, v, node))
            for v in k.values():
                if type(v) in GUARDED:
                    deep = max(deep, argument_guard(budget, v, node))
        if isinstance(obj, str):
            _precheck_str_method(obj, name, a, comp.limits.max_string, node)
        elif compares and type(obj) in NESTED and (name == "sort" or deep * len(obj) > 10 * c.limits.max_collection):
            budget.measure(obj, node)  # sort compares the elements; index/count/remove compare each with the argument
        size = len(obj) if grows and walks else 0
        try:
            result = method(*a, **k)
        except Exception as exc:  # noqa: BLE001
            raise comp.wrap(exc, node) from None
        if grows:
            budget.check_size(obj, node)
            if walks:  # bulk growth (extend, update): count it; one element at a time is bounded by the steps
                budget.alloc(max(len(obj) - size, 0) * _ELEMENT_BYTES.get(type(obj), 8), node)
        return budget.made(result, node) if isinstance(result, SIZED) else result
    return run


def builtin_call(comp: Compiler, node: ast.Call, name: str) -> Fn:
    from .builtins import call_builtin

    args = [comp.expr(a) for a in node.args]
    kwargs = [(kw.arg, comp.expr(kw.value)) for kw in node.keywords]
    c = comp

    def run(env):
        interp = c.interp
        if name in env:
            raise RuntimeProgramError(f"'{name}' is a variable, not a tool", where=loc(node))
        a = [f(env) for f in args]
        k = {key: f(env) for key, f in kwargs}
        try:
            result = call_builtin(interp, name, a, k)
        except Exception as exc:  # noqa: BLE001
            raise comp.wrap(exc, node) from None
        return c.budget.made(result, node) if isinstance(result, SIZED) else result
    return run


def bind_tool(comp: Compiler, node: ast.Call, sig) -> tuple[list, dict[str, Any]] | str:
    """Static binding of a call's argument positions to tool parameters (or the problem text).

    Returns (plan, presets): ``plan`` lists (parameter, ArgRef) to fill at run time.
    """
    shape = (id(sig), len(node.args), tuple(kw.arg for kw in node.keywords))
    cached = comp.bindings.get(shape)
    if cached is not None and cached[0] is sig:
        return cached[1]
    positional = [ArgRef("pos", i) for i in range(len(node.args))]
    keywords = {kw.arg: ArgRef("kw", kw.arg) for kw in node.keywords}
    bound, problems = sig.bind(positional, keywords)
    if problems:
        result = "; ".join(problems)
    else:
        result = ([(p, v) for p, v in bound.items() if isinstance(v, ArgRef)],
                  {p: v for p, v in bound.items() if not isinstance(v, ArgRef)})
    comp.bindings[shape] = (sig, result)
    return result


class ArgRef:
    """Where a tool argument comes from in a call: positional index or keyword name."""

    __slots__ = ("kind", "key")

    def __init__(self, kind: str, key):
        self.kind, self.key = kind, key


def _precheck_str_method(obj: str, name: str, args: list, limit: int, node) -> None:
    """Refuse string methods whose result would exceed max_string before computing it."""
    size = None
    if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        n = obj.count(args[0]) if args[0] else len(obj) + 1
        size = len(obj) + n * (len(args[1]) - len(args[0]))
    elif name == "join" and args and isinstance(args[0], SIZED):
        # only strings can be joined (anything else fails at once); never turn items into text here
        items = args[0]
        size = sum(len(x) for x in items if type(x) is str) + len(obj) * max(len(items) - 1, 0)
    elif name == "zfill" and args and isinstance(args[0], int):
        size = args[0]
    if size is not None and size > limit:
        raise LimitExceeded("max_string", limit, f"str.{name} would make {size} characters; the limit max_string "
                                                 f"is {limit}", where=loc(node))
