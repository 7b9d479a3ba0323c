"""The evaluator: runs a checked program, compiled once into closures by :mod:`.compiler`.

Nothing here hands program text to Python's ``eval``/``exec``/``compile``.  Every operation is
one of ours, on plain data or on vistrace values, under a :class:`Budget` of limits.

Tool calls go through a :class:`ToolCaller`.  With ``parallel > 1`` a call is submitted to a
thread pool without waiting: its result is a ``Pending`` that is resolved only when the value is
actually needed (a condition, an operator, a return), so independent calls overlap while the
trace keeps program order (steps are reserved in order, before they run).
"""

from __future__ import annotations

import ast
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vistrace.errors import InputError, LimitExceeded, Location, RuntimeProgramError, ToolError, VistraceError
from vistrace.signature import check_value, type_name

from .compiler import Compiler, Fn, Pending, Return, loc, resolve
from .interface import ToolCaller, ToolTable
from .limits import Budget, Limits
from .program import RESULT_NAMES, Program, translate_eval
from .safety import SAFE_METHODS

__all__ = ["Interpreter", "ModuleResult", "Outcome", "Pending"]


@dataclass
class ModuleResult:
    """One top-level statement of a VPEval program: a skill module and its verdict."""

    line: int
    source: str
    module: str
    passed: bool
    value: Any = None
    explanation: str = ""
    error: str | None = None
    col: int = 0


@dataclass
class Outcome:
    value: Any
    style: str
    modules: list[ModuleResult] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)


def _body(stmts: list[ast.stmt]) -> list[ast.stmt]:
    """Statements without a leading docstring."""
    if stmts and isinstance(stmts[0], ast.Expr) and isinstance(stmts[0].value, ast.Constant) \
            and isinstance(stmts[0].value.value, str):
        return stmts[1:]
    return stmts


def _compiled(program: Program, tools: ToolTable) -> Compiler:
    """The program's compiled closures for this tool table, compiled once and reused by later runs."""
    cached = program.compiled
    if cached is not None and cached[0] is tools:
        return cached[1]
    comp = Compiler(program, tools)
    program.compiled = (tools, comp)
    return comp


class Interpreter:
    def __init__(self, program: Program, tools: ToolTable, caller: ToolCaller, limits: Limits | None = None,
                 parallel: int = 1):
        self.program = program
        self.tools = tools
        self.caller = caller
        self.limits = limits or Limits()
        self.budget = Budget(self.limits)
        self.parallel = parallel
        self.pool: ThreadPoolExecutor | None = None
        self.futures: list[Future] = []
        self.result_set = False
        self.result: Any = None
        self.printed: list[str] = []
        self.functions: dict[str, ast.FunctionDef] = dict(program.functions)
        self.compiler = _compiled(program, tools)

    # ---------------------------------------------------------------------------------- run
    def run(self, inputs: dict[str, Any]) -> Outcome:
        comp = self.compiler
        if not comp.lock.acquire(blocking=False):  # the cached compiled program is busy: compile privately
            comp = self.compiler = Compiler(self.program, self.tools)
            comp.lock.acquire()
        comp.attach(self)
        if self.parallel > 1:
            self.pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="vistrace-call")
        try:
            return self._run(inputs)
        finally:
            comp.lock.release()
            if self.pool is not None:
                for f in self.futures:
                    f.cancel()
                self.pool.shutdown(wait=True)

    def _run(self, inputs: dict[str, Any]) -> Outcome:
        prog = self.program
        if prog.style == "function":
            value = self.call_function(prog.entry.name, [], dict(inputs), prog.entry, check_types=True)
            self.drain()
            return Outcome(self.bounded(resolve(value), prog.entry), prog.style, printed=self.printed)
        missing = [i.name for i in prog.inputs if i.name not in inputs]
        if missing:
            raise InputError(f"the program needs input{'s' if len(missing) > 1 else ''} "
                             + ", ".join(f"'{m}'" for m in missing),
                             hint="pass them by name (CLI: --image NAME=PATH or --arg NAME=VALUE)")
        env: dict[str, Any] = dict(inputs)
        if self.compiler.top is None:
            body = _body([s for s in prog.tree.body if not isinstance(s, ast.FunctionDef)])
            self.compiler.top = [(s, self.compiler.stmt(s)) for s in body]
        stmts = self.compiler.top
        if prog.style == "vpeval":
            return self.run_vpeval(stmts, env)
        last: Any = None
        for _, fn in stmts:
            last = fn(env)
        self.drain()
        if self.result_set:
            value = self.result
        else:
            value = next((env[n] for n in RESULT_NAMES if n in env), last)
        return Outcome(self.bounded(resolve(value), prog.tree.body[-1] if prog.tree.body else None), prog.style,
                       printed=self.printed)

    def bounded(self, value: Any, node: ast.AST | None) -> Any:
        """The result goes on to be summarized, serialized and hashed: refuse one too big to walk."""
        self.budget.measure(value, node)
        return value

    def run_vpeval(self, stmts: list[tuple[ast.stmt, Fn]], env: dict) -> Outcome:
        """Run every module; a module that errors counts as failed and is reported, never dropped."""
        results: list[tuple[ast.stmt, Any]] = []
        for stmt, fn in stmts:
            try:
                results.append((stmt, fn(env)))
            except LimitExceeded:
                raise
            except VistraceError as exc:
                results.append((stmt, exc))
        modules: list[ModuleResult] = []
        for stmt, value in results:
            call = stmt.value
            name = call.func.id if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) else "?"
            src = self.compiler.segment(stmt)
            if isinstance(value, Pending):
                try:
                    value = resolve(value)
                except VistraceError as exc:
                    value = exc
            if isinstance(value, VistraceError):
                modules.append(ModuleResult(stmt.lineno, src, name, False, None, "", str(value),
                                            stmt.col_offset))
                continue
            verdict = getattr(value, "value", value)
            modules.append(ModuleResult(stmt.lineno, src, name, bool(verdict), verdict,
                                        getattr(value, "explanation", ""), None, stmt.col_offset))
        passed = sum(m.passed for m in modules)
        value = {"score": passed / len(modules) if modules else 0.0, "passed": passed, "total": len(modules),
                 "modules": [m.__dict__ for m in modules]}
        return Outcome(value, "vpeval", modules, self.printed)

    def drain(self) -> None:
        """Wait for every submitted call; raise the first failure in program order."""
        for f in self.futures:
            f.exception()
        for f in self.futures:
            exc = f.exception()
            if exc is not None:
                raise exc

    # ---------------------------------------------------------------------------- functions
    def call_function(self, name: str, args: list, kwargs: dict[str, Any], node: ast.AST,
                      check_types: bool = False) -> Any:
        fn = self.functions[name]
        a = fn.args
        params = list(a.posonlyargs) + list(a.args)
        defaults = [None] * (len(params) - len(a.defaults)) + list(a.defaults)
        err = InputError if check_types else RuntimeProgramError
        if len(args) > len(params):
            raise err(f"{fn.name} takes {len(params)} positional arguments, got {len(args)}", where=loc(node))
        local: dict[str, Any] = dict(zip((p.arg for p in params), args))
        all_params = params + list(a.kwonlyargs)
        all_defaults = defaults + list(a.kw_defaults)
        known = {p.arg for p in all_params}
        for k, v in kwargs.items():
            if k not in known:
                raise err(f"{fn.name} has no input '{k}'", hint="inputs: " + ", ".join(sorted(known)), where=loc(node))
            local[k] = v
        for p, d in zip(all_params, all_defaults):
            if p.arg not in local:
                if d is None:
                    ann = f" ({ast.unparse(p.annotation)})" if p.annotation is not None else ""
                    raise err(f"missing input '{p.arg}'{ann} of {fn.name}", where=loc(node),
                              hint="pass it by name (CLI: --image NAME=PATH or --arg NAME=VALUE)")
                local[p.arg] = d.value
            if check_types and p.annotation is not None:
                expected = self.annotation(p.annotation)
                if not check_value(expected, resolve(local[p.arg])):
                    raise InputError(f"input '{p.arg}' of {fn.name} expects {type_name(expected)}, "
                                     f"got {type(local[p.arg]).__name__}", where=loc(p))
        body = self.compiler.bodies.get(name)
        if body is None:
            body = self.compiler.bodies[name] = self.compiler.block(_body(fn.body) or [ast.Pass()])
        self.budget.enter_call(node)
        try:
            body(local)
            return None
        except Return as r:
            return r.value
        except RecursionError:
            # Python's own stack ran out first (calls within max_call_depth, each nesting expressions within
            # max_nesting): a limit all the same.  Raised again from a shallower call if there is no room here.
            raise LimitExceeded("max_call_depth", self.limits.max_call_depth,
                                "calls and the expressions inside them nest too deeply for the interpreter's stack "
                                "(limits max_call_depth and max_nesting)", where=loc(node)) from None
        finally:
            self.budget.leave_call()

    def annotation(self, node: ast.expr) -> Any:
        from .checker import Checker

        return Checker(self.program, self.tools, self.limits).annotation_type(node, node)

    # -------------------------------------------------------------------------------- calls
    def invoke_pending(self, step: int, sig, bound: dict[str, Any], node: ast.AST) -> Any:
        args = {}
        for k, v in bound.items():
            if type(v) is Pending:
                exc = v.future.exception()
                if exc is not None:
                    raise ToolError(f"input '{k}' of {sig.name} failed earlier: {exc}",
                                    where=loc(node, tool=sig.tool, step=step))
                v = v.future.result()
            args[k] = v
        return self.invoke(step, sig, args, node)

    def invoke(self, step: int, sig, args: dict[str, Any], node: ast.AST) -> Any:
        try:
            return self.caller.call(step, sig, args)
        except Exception as exc:  # noqa: BLE001 - a crashing tool is reported as that tool's error
            raise self.locate_tool_error(exc, step, sig, node) from exc

    @staticmethod
    def locate_tool_error(exc: Exception, step: int, sig, node: ast.AST) -> Exception:
        """A tool's failure, located at its call (line:col, step, tool); foreign errors become ToolError."""
        where = loc(node, tool=sig.tool, step=step)
        if isinstance(exc, VistraceError):
            return exc.with_location(where)
        return ToolError(f"{sig.tool} failed: {type(exc).__name__}: {exc}", where=where)

    def attribute(self, obj: Any, node: ast.Attribute, call: bool = False) -> Any:
        name = node.attr
        if name.startswith("_"):
            raise RuntimeProgramError(f"attributes starting with '_' are not allowed: '{name}'", where=loc(node))
        public = getattr(type(obj), "public", None)
        if isinstance(public, frozenset) and hasattr(obj, "summary"):
            if name not in public:
                raise RuntimeProgramError(f"{type(obj).__name__} has no attribute '{name}'",
                                          hint="public: " + ", ".join(sorted(public)), where=loc(node))
            try:
                value = getattr(obj, name)
            except Exception as exc:  # noqa: BLE001
                raise self.compiler.wrap(exc, node) from None
            if callable(value) and not call and not hasattr(value, "summary"):
                raise RuntimeProgramError(f"'{name}' is a method of {type(obj).__name__}; call it: .{name}()",
                                          where=loc(node))
            if type(value) in (list, dict, set):  # values are immutable: a field's container is handed out as a copy
                value = self.budget.made(value.copy(), node)
            return value
        methods = SAFE_METHODS.get(type(obj))
        if methods is not None and call and name in methods:
            return getattr(obj, name)
        what = "method" if call else "attribute"
        raise RuntimeProgramError(f"{what} '{name}' of {type(obj).__name__} is not available", where=loc(node))

    def resolve(self, value: Any) -> Any:
        return resolve(value)

    def special_eval(self, text: Any, env: dict, node: ast.Call) -> Any:
        """VisProg's EVAL: the expression string is parsed and run by this interpreter, never by eval()."""
        if not isinstance(text, str):
            raise RuntimeProgramError("EVAL needs a string expression", where=loc(node))
        tree, translated, err = translate_eval(text, self.limits.max_nesting)
        if err:
            raise RuntimeProgramError(err, hint=f"translated expression: {translated[:200]}", where=loc(node))
        fn = self.compiler.evals.get(translated)
        if fn is None:
            fn = self.compiler.evals[translated] = self.compiler.expr(tree.body)
        # VisProg's rule: string variables 'yes'/'no' take part as booleans, digit strings as numbers.
        view = {}
        for key, value in env.items():
            value = resolve(value)
            if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
                value = value.strip().lower() == "yes"
            elif isinstance(value, str) and len(value) <= 1000 and value.strip().isdecimal():
                value = int(value.strip())  # (as int(): longer digit strings stay strings, see builtins)
            view[key] = value
        try:
            return fn(view)
        except VistraceError as exc:
            exc.where = Location(node.lineno, node.col_offset, exc.where.step, exc.where.tool)
            exc.message = f"in EVAL expression `{translated}`: {exc.message}"
            raise
