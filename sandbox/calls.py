"""Compiling calls: program functions, VisProg's RESULT/EVAL, builtins and tools.

What a call names is resolved once, at compile time; the closures reach the current run's
interpreter through the compiler (``comp.interp``), so compiled code is reused across runs.
"""

from __future__ import annotations

import ast
from time import monotonic

from vistrace.errors import RuntimeProgramError, ToolArgumentError

from .compiler import Compiler, Fn, Pending, loc
from .safety import SAFE_BUILTINS


def compile_call(comp: Compiler, node: ast.Call) -> Fn:
    func = node.func
    if isinstance(func, ast.Attribute):
        return comp.method_call(node)
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
        return comp.builtin_call(node, name)
    sig = comp.tools.signature(name) if comp.tools is not None else None
    if sig is None:
        hint = comp.tools.suggest(name) if comp.tools is not None else None
        return comp.refuse(node, f"unknown tool '{name}'", hint)
    return tool_call(comp, node, sig)


def tool_call(comp: Compiler, node: ast.Call, sig) -> Fn:
    binding = comp.bind_tool(node, sig)
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
    site = comp.call_site(node)
    name = node.func.id

    def call(env):
        if name in env:
            raise RuntimeProgramError(f"'{name}' is a variable, not a tool", where=loc(node))
        args = dict(fixed)
        for param, f in fill:
            args[param] = f(env)
        interp = comp.interp
        b = interp.budget
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
