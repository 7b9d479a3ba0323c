"""The evaluator: walks the checked syntax tree and performs each operation itself.

Nothing here hands program text to Python's ``eval``/``exec``/``compile``.  Every operation is
one of ours, on plain data or on vistrace values, under a :class:`Budget` of limits.

Tool calls go through a :class:`ToolCaller`.  With ``parallel > 1`` a call whose inputs are
pending results of earlier calls is submitted to a thread pool without waiting: its result is a
``Pending`` that the interpreter resolves only when the value is actually needed (a condition, an
operator, a return), so independent calls overlap while the trace keeps program order (steps are
reserved in order, before they run).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections import ChainMap
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vistrace.errors import (InputError, LimitExceeded, Location, RuntimeProgramError, ToolArgumentError,
                             ToolError, VistraceError)
from vistrace.signature import check_value, type_name

from .interface import CallSite, ToolCaller, ToolTable
from .limits import Budget, Limits
from .program import RESULT_NAMES, Program, translate_eval
from .safety import ALLOWED_NODES, GROWING_METHODS, REJECTED, SAFE_BUILTINS, SAFE_METHODS

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
           ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not}
_SPEC_NUMBER = re.compile(r"\d+")


class Pending:
    """A tool result that is still being computed on a worker thread."""

    __slots__ = ("future",)

    def __init__(self, future: Future):
        self.future = future


class _Return(Exception):
    def __init__(self, value: Any):
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


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


@dataclass
class Outcome:
    value: Any
    style: str
    modules: list[ModuleResult] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)


def _loc(node: ast.AST | None, **kw) -> Location:
    return Location(line=getattr(node, "lineno", None), col=getattr(node, "col_offset", None), **kw)


class Interpreter:
    def __init__(self, program: Program, tools: ToolTable, caller: ToolCaller, limits: Limits | None = None,
                 parallel: int = 1):
        self.program = program
        self.tools = tools
        self.caller = caller
        self.limits = limits or Limits()
        self.budget = Budget(self.limits)
        self.pool = ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="vistrace-call") if parallel > 1 else None
        self.futures: list[Future] = []
        self.result_set = False
        self.result: Any = None
        self.printed: list[str] = []
        self._stmt: ast.stmt | None = None
        self._module: dict[str, Any] = {}

    # ---------------------------------------------------------------------------------- run
    def run(self, inputs: dict[str, Any]) -> Outcome:
        try:
            return self._run(inputs)
        finally:
            if self.pool is not None:
                for f in self.futures:
                    if not f.done():
                        f.cancel()
                self.pool.shutdown(wait=True)

    def _run(self, inputs: dict[str, Any]) -> Outcome:
        prog = self.program
        self._module = {name: fn for name, fn in prog.functions.items()}
        body = [s for s in prog.tree.body if not isinstance(s, ast.FunctionDef)]
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        if prog.style == "function":
            value = self.call_function(prog.entry, [], dict(inputs), prog.entry, check_types=True)
            self.drain()
            return Outcome(self.resolve(value), prog.style, printed=self.printed)
        missing = [i.name for i in prog.inputs if i.name not in inputs]
        if missing:
            raise InputError(f"the program needs input{'s' if len(missing) > 1 else ''} "
                             + ", ".join(f"'{m}'" for m in missing),
                             hint="pass them by name (CLI: --image NAME=PATH or --arg NAME=VALUE)")
        env: dict[str, Any] = dict(inputs)
        scope = ChainMap(env, self._module)
        if prog.style == "vpeval":
            return self.run_vpeval(body, scope)
        last: Any = None
        for stmt in body:
            last = self.exec_stmt(stmt, scope, top=True)
        self.drain()
        if self.result_set:
            value = self.result
        else:
            value = next((env[n] for n in RESULT_NAMES if n in env), last)
        return Outcome(self.resolve(value), prog.style, printed=self.printed)

    def run_vpeval(self, body: list[ast.stmt], scope: ChainMap) -> Outcome:
        """Run every module; a module that errors counts as failed and is reported, never dropped."""
        pending: list[tuple[ast.stmt, Any]] = []
        modules: list[ModuleResult] = []
        for stmt in body:
            try:
                pending.append((stmt, self.exec_stmt(stmt, scope, top=True, keep_pending=True)))
            except LimitExceeded:
                raise
            except VistraceError as exc:
                pending.append((stmt, exc))
        for stmt, value in pending:
            call = stmt.value
            name = call.func.id if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) else "?"
            src = ast.get_source_segment(self.program.source, stmt) or ""
            if isinstance(value, Pending):
                try:
                    value = self.resolve(value)
                except VistraceError as exc:
                    value = exc
            if isinstance(value, VistraceError):
                modules.append(ModuleResult(stmt.lineno, src, name, False, None, "", str(value)))
                continue
            explanation = getattr(value, "explanation", "")
            verdict = getattr(value, "value", value)
            modules.append(ModuleResult(stmt.lineno, src, name, bool(verdict), verdict, explanation))
        passed = sum(m.passed for m in modules)
        score = passed / len(modules) if modules else 0.0
        value = {"score": score, "passed": passed, "total": len(modules),
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

    def resolve(self, value: Any) -> Any:
        if isinstance(value, Pending):
            return value.future.result()
        return value

    # ---------------------------------------------------------------------------- functions
    def call_function(self, fn: ast.FunctionDef, args: list, kwargs: dict[str, Any], node: ast.AST,
                      check_types: bool = False) -> Any:
        a = fn.args
        params = list(a.posonlyargs) + list(a.args)
        defaults = [None] * (len(params) - len(a.defaults)) + list(a.defaults)
        local: dict[str, Any] = {}
        if len(args) > len(params):
            raise RuntimeProgramError(f"{fn.name} takes {len(params)} positional arguments, got {len(args)}",
                                      where=_loc(node))
        for p, v in zip(params, args):
            local[p.arg] = v
        all_params = params + list(a.kwonlyargs)
        all_defaults = defaults + list(a.kw_defaults)
        known = {p.arg for p in all_params}
        for k, v in kwargs.items():
            if k not in known:
                err = InputError if check_types else RuntimeProgramError
                raise err(f"{fn.name} has no input '{k}'", hint="inputs: " + ", ".join(sorted(known)), where=_loc(node))
            local[k] = v
        for p, d in zip(all_params, all_defaults):
            if p.arg not in local:
                if d is None:
                    err = InputError if check_types else RuntimeProgramError
                    ann = f" ({ast.unparse(p.annotation)})" if p.annotation is not None else ""
                    raise err(f"missing input '{p.arg}'{ann} of {fn.name}", where=_loc(node),
                              hint="pass it by name (CLI: --image NAME=PATH or --arg NAME=VALUE)")
                local[p.arg] = d.value
            if check_types and p.annotation is not None:
                expected = self.annotation(p.annotation)
                if not check_value(expected, self.resolve(local[p.arg])):
                    raise InputError(f"input '{p.arg}' of {fn.name} expects {type_name(expected)}, "
                                     f"got {type(local[p.arg]).__name__}", where=_loc(p))
        self.budget.enter_call(_loc(node))
        try:
            scope = ChainMap(local, self._module)
            body = fn.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]
            try:
                for stmt in body:
                    self.exec_stmt(stmt, scope)
            except _Return as r:
                return r.value
            return None
        finally:
            self.budget.leave_call()

    def annotation(self, node: ast.expr) -> Any:
        from .checker import Checker

        return Checker(self.program, self.tools, self.limits).annotation_type(node, node)

    # --------------------------------------------------------------------------- statements
    def exec_stmt(self, node: ast.stmt, scope: ChainMap, top: bool = False, keep_pending: bool = False) -> Any:
        """Execute one statement; returns the value of an expression statement (else None)."""
        if not isinstance(node, ALLOWED_NODES) or isinstance(node, ast.FunctionDef):
            msg = REJECTED.get(type(node), (f"'{type(node).__name__}' is not allowed",))[0]
            raise RuntimeProgramError(msg, where=_loc(node))
        self.budget.step(_loc(node))
        outer, self._stmt = self._stmt, node
        try:
            if isinstance(node, ast.Expr):
                value = self.expr(node.value, scope, lazy=True)
                return value if keep_pending else (self.resolve(value) if not self.pool else value)
            if isinstance(node, ast.Assign):
                value = self.expr(node.value, scope, lazy=True)
                for target in node.targets:
                    self.assign(target, value, scope)
                return value if keep_pending else None
            if isinstance(node, ast.AnnAssign):
                if node.value is not None:
                    self.assign(node.target, self.expr(node.value, scope, lazy=True), scope)
                return None
            if isinstance(node, ast.AugAssign):
                current = self.expr(_as_load(node.target), scope)
                value = self.binop(node.op, current, self.expr(node.value, scope), node)
                self.assign(node.target, value, scope)
                return None
            if isinstance(node, ast.If):
                branch = node.body if self.truth(self.expr(node.test, scope), node.test) else node.orelse
                for s in branch:
                    self.exec_stmt(s, scope)
                return None
            if isinstance(node, ast.For):
                iterable = self.iterable(self.expr(node.iter, scope), node.iter)
                for item in iterable:
                    self.budget.iteration(_loc(node))
                    self.assign(node.target, item, scope)
                    try:
                        for s in node.body:
                            self.exec_stmt(s, scope)
                    except _Break:
                        break
                    except _Continue:
                        continue
                return None
            if isinstance(node, ast.While):
                while self.truth(self.expr(node.test, scope), node.test):
                    self.budget.iteration(_loc(node))
                    try:
                        for s in node.body:
                            self.exec_stmt(s, scope)
                    except _Break:
                        break
                    except _Continue:
                        continue
                return None
            if isinstance(node, ast.Return):
                raise _Return(self.resolve(self.expr(node.value, scope)) if node.value is not None else None)
            if isinstance(node, ast.Break):
                raise _Break()
            if isinstance(node, ast.Continue):
                raise _Continue()
            if isinstance(node, ast.Pass):
                return None
            raise RuntimeProgramError(f"'{type(node).__name__}' is not supported", where=_loc(node))
        finally:
            self._stmt = outer

    def assign(self, target: ast.expr, value: Any, scope: ChainMap) -> None:
        if isinstance(target, ast.Name):
            if target.id.startswith("_"):
                raise RuntimeProgramError(f"names starting with '_' are not allowed: '{target.id}'", where=_loc(target))
            scope[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            items = list(self.iterable(self.resolve(value), target))
            if len(items) != len(target.elts):
                raise RuntimeProgramError(f"cannot unpack {len(items)} values into {len(target.elts)} names",
                                          where=_loc(target))
            for t, v in zip(target.elts, items):
                self.assign(t, v, scope)
        elif isinstance(target, ast.Subscript):
            container = self.expr(target.value, scope)
            key = self.expr(target.slice, scope)
            if not isinstance(container, (list, dict)):
                raise RuntimeProgramError(f"a {type(container).__name__} cannot be changed: values are immutable",
                                          where=_loc(target))
            self.guard(lambda: container.__setitem__(key, self.resolve(value)), target)
            self.budget.check_size(container, _loc(target))
        else:
            raise RuntimeProgramError(f"cannot assign to {type(target).__name__}", where=_loc(target))

    # -------------------------------------------------------------------------- expressions
    def guard(self, fn, node: ast.AST):
        """Run one primitive operation, turning Python errors into located RuntimeProgramErrors."""
        try:
            return fn()
        except VistraceError as exc:
            raise exc.with_location(_loc(node))
        except (_Return, _Break, _Continue):
            raise
        except RecursionError:
            raise LimitExceeded("max_nesting", self.limits.max_nesting, "expression nests too deeply",
                                where=_loc(node)) from None
        except MemoryError:
            raise LimitExceeded("memory", 0, "operation ran out of memory", where=_loc(node)) from None
        except Exception as exc:  # noqa: BLE001 - any primitive failure becomes a program error
            text = ast.get_source_segment(self.program.source, node) or ""
            raise RuntimeProgramError(f"{type(exc).__name__}: {exc}" + (f" in `{text}`" if text and len(text) < 80 else ""),
                                      where=_loc(node)) from None

    def truth(self, value: Any, node: ast.AST) -> bool:
        return self.guard(lambda: bool(self.resolve(value)), node)

    def iterable(self, value: Any, node: ast.AST):
        value = self.resolve(value)
        if isinstance(value, (list, tuple, str, range, dict, set, frozenset)) or hasattr(value, "__iter__") and \
                hasattr(value, "summary"):
            return value
        raise RuntimeProgramError(f"cannot iterate over {type(value).__name__}", where=_loc(node))

    def expr(self, node: ast.expr, scope: ChainMap, lazy: bool = False) -> Any:  # noqa: C901
        if not isinstance(node, ALLOWED_NODES):
            msg = REJECTED.get(type(node), (f"'{type(node).__name__}' is not allowed",))[0]
            raise RuntimeProgramError(msg, where=_loc(node))
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in scope:
                value = scope[node.id]
                if isinstance(value, ast.FunctionDef):
                    raise RuntimeProgramError(f"'{node.id}' is a function; call it", where=_loc(node))
                return value if lazy else self.resolve(value)
            if node.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[node.id]
            raise RuntimeProgramError(f"name '{node.id}' is not defined", where=_loc(node))
        if isinstance(node, ast.Call):
            value = self.call(node, scope)
            return value if lazy else self.resolve(value)
        if isinstance(node, ast.BinOp):
            return self.binop(node.op, self.expr(node.left, scope), self.expr(node.right, scope), node)
        if isinstance(node, ast.UnaryOp):
            v = self.expr(node.operand, scope)
            if isinstance(node.op, ast.Not):
                return not self.truth(v, node)
            op = {ast.USub: operator.neg, ast.UAdd: operator.pos}.get(type(node.op))
            if op is None:
                raise RuntimeProgramError(f"operator {type(node.op).__name__} is not allowed", where=_loc(node))
            return self.guard(lambda: op(v), node)
        if isinstance(node, ast.BoolOp):
            is_and = isinstance(node.op, ast.And)
            value: Any = None
            for sub in node.values:
                value = self.expr(sub, scope)
                if self.truth(value, sub) != is_and:
                    return value
            return value
        if isinstance(node, ast.Compare):
            left = self.expr(node.left, scope)
            for op, comp in zip(node.ops, node.comparators):
                right = self.expr(comp, scope)
                fn = _CMPOPS[type(op)]
                if not self.guard(lambda: fn(left, right), node):
                    return False
                left = right
            return True
        if isinstance(node, ast.IfExp):
            return self.expr(node.body if self.truth(self.expr(node.test, scope), node.test) else node.orelse, scope)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = [self.expr(e, scope) for e in node.elts]
            out = {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)]
            return self.budget.check_size(self.guard(lambda: out(items), node), _loc(node))
        if isinstance(node, ast.Dict):
            d = {}
            for k, v in zip(node.keys, node.values):
                key = self.expr(k, scope)
                val = self.expr(v, scope)
                self.guard(lambda: d.__setitem__(key, val), node)
            return self.budget.check_size(d, _loc(node))
        if isinstance(node, ast.Subscript):
            container = self.expr(node.value, scope)
            key = self.expr(node.slice, scope)
            return self.guard(lambda: container[key], node)
        if isinstance(node, ast.Slice):
            parts = [self.expr(p, scope) if p is not None else None for p in (node.lower, node.upper, node.step)]
            return slice(*parts)
        if isinstance(node, ast.Attribute):
            return self.attribute(self.expr(node.value, scope), node)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self.comprehension(node, scope)
        if isinstance(node, ast.JoinedStr):
            parts = []
            for v in node.values:
                parts.append(self.expr(v, scope) if isinstance(v, ast.FormattedValue) else str(v.value))
            return self.budget.check_size("".join(parts), _loc(node))
        if isinstance(node, ast.FormattedValue):
            return self.formatted(node, scope)
        raise RuntimeProgramError(f"'{type(node).__name__}' is not supported", where=_loc(node))

    def formatted(self, node: ast.FormattedValue, scope: ChainMap) -> str:
        value = self.expr(node.value, scope)
        spec = self.expr(node.format_spec, scope) if node.format_spec is not None else ""
        for num in _SPEC_NUMBER.findall(spec):
            if len(num) > 7 or int(num) > self.limits.max_string:
                raise LimitExceeded("max_string", self.limits.max_string,
                                    f"format width {num} exceeds the limit max_string", where=_loc(node))
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        elif node.conversion == ord("s"):
            value = str(value)
        return self.budget.check_size(self.guard(lambda: format(value, spec), node), _loc(node))

    def binop(self, op: ast.operator, left: Any, right: Any, node: ast.AST) -> Any:
        fn = _BINOPS.get(type(op))
        if fn is None:
            raise RuntimeProgramError(f"operator {type(op).__name__} is not allowed", where=_loc(node))
        lim = self.limits
        if isinstance(op, ast.Mod) and isinstance(left, str):
            raise RuntimeProgramError("'%' string formatting is not allowed", hint="use an f-string",
                                      where=_loc(node))
        if isinstance(op, ast.Mult):
            seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                size = len(seq) * max(n, 0)
                limit, name = (lim.max_string, "max_string") if isinstance(seq, str) else (lim.max_collection, "max_collection")
                if size > limit:
                    raise LimitExceeded(name, limit, f"repetition would make {size} elements; the limit {name} is {limit}",
                                        where=_loc(node))
        if isinstance(op, ast.Add) and isinstance(left, (str, list, tuple)) and type(left) is type(right):
            limit = lim.max_string if isinstance(left, str) else lim.max_collection
            if len(left) + len(right) > limit:
                name = "max_string" if isinstance(left, str) else "max_collection"
                raise LimitExceeded(name, limit, f"result of {len(left) + len(right)} elements exceeds the limit {name}",
                                    where=_loc(node))
        if isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
            bits = right * math.log2(abs(left))
            if bits > lim.max_int_bits:
                raise LimitExceeded("max_int_bits", lim.max_int_bits,
                                    f"{left} ** {right} would need about {bits:.0f} bits; the limit max_int_bits is "
                                    f"{lim.max_int_bits}", where=_loc(node))
        return self.budget.check_size(self.guard(lambda: fn(left, right), node), _loc(node))

    def attribute(self, obj: Any, node: ast.Attribute, call: bool = False) -> Any:
        name = node.attr
        if name.startswith("_"):
            raise RuntimeProgramError(f"attributes starting with '_' are not allowed: '{name}'", where=_loc(node))
        public = getattr(type(obj), "public", None)
        if isinstance(public, frozenset) and hasattr(obj, "summary"):
            if name not in public:
                raise RuntimeProgramError(f"{type(obj).__name__} has no attribute '{name}'",
                                          hint="public: " + ", ".join(sorted(public)), where=_loc(node))
            value = self.guard(lambda: getattr(obj, name), node)
            if callable(value) and not call and not hasattr(value, "summary"):
                raise RuntimeProgramError(f"'{name}' is a method of {type(obj).__name__}; call it: .{name}()",
                                          where=_loc(node))
            return value
        for kind, methods in SAFE_METHODS.items():
            if type(obj) is kind:
                if call and name in methods:
                    return getattr(obj, name)
                break
        what = "method" if call else "attribute"
        raise RuntimeProgramError(f"{what} '{name}' of {type(obj).__name__} is not available", where=_loc(node))

    def comprehension(self, node, scope: ChainMap) -> Any:
        results: list = []
        local: dict[str, Any] = {}
        inner = scope.new_child(local)

        def loop(i: int) -> None:
            if i == len(node.generators):
                if isinstance(node, ast.DictComp):
                    results.append((self.expr(node.key, inner), self.expr(node.value, inner)))
                else:
                    results.append(self.expr(node.elt, inner))
                if len(results) > self.limits.max_collection:
                    self.budget.check_size(results, _loc(node))
                return
            gen = node.generators[i]
            for item in self.iterable(self.expr(gen.iter, inner), gen.iter):
                self.budget.iteration(_loc(node))
                self.assign(gen.target, item, inner)
                if all(self.truth(self.expr(c, inner), c) for c in gen.ifs):
                    loop(i + 1)

        loop(0)
        if isinstance(node, ast.DictComp):
            return dict(results)
        if isinstance(node, ast.SetComp):
            return self.guard(lambda: set(results), node)
        return results

    # -------------------------------------------------------------------------------- calls
    def call(self, node: ast.Call, scope: ChainMap) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute):
            obj = self.expr(func.value, scope)
            method = self.attribute(obj, func, call=True)
            args = [self.expr(a, scope) for a in node.args]
            kwargs = {kw.arg: self.expr(kw.value, scope) for kw in node.keywords}
            self.precheck_method(obj, func.attr, args, node)
            result = self.guard(lambda: method(*args, **kwargs), node)
            if func.attr in GROWING_METHODS:
                self.budget.check_size(obj, _loc(node))
            return self.budget.check_size(result, _loc(node))
        if not isinstance(func, ast.Name):
            raise RuntimeProgramError("only tools, builtins, program functions and value methods can be called",
                                      where=_loc(node))
        name = func.id
        if any(kw.arg is None for kw in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
            raise RuntimeProgramError("argument unpacking is not allowed", where=_loc(node))
        target = scope.get(name)
        if isinstance(target, ast.FunctionDef):
            args = [self.expr(a, scope) for a in node.args]
            kwargs = {kw.arg: self.expr(kw.value, scope) for kw in node.keywords}
            return self.call_function(target, args, kwargs, node)
        if name in scope:
            raise RuntimeProgramError(f"'{name}' is a variable, not a tool", where=_loc(node))
        if name == "RESULT":
            return self.special_result(node, scope)
        if name == "EVAL":
            return self.special_eval(node, scope)
        if name in SAFE_BUILTINS:
            from .builtins import call_builtin

            args = [self.expr(a, scope) for a in node.args]
            kwargs = {kw.arg: self.expr(kw.value, scope) for kw in node.keywords}
            result = self.guard(lambda: call_builtin(self, name, args, kwargs), node)
            return self.budget.check_size(result, _loc(node))
        sig = self.tools.signature(name)
        if sig is None:
            hint = self.tools.suggest(name)
            raise RuntimeProgramError(f"unknown tool '{name}'", hint=hint, where=_loc(node))
        return self.call_tool(node, sig, scope)

    def precheck_method(self, obj: Any, name: str, args: list, node: ast.AST) -> None:
        """Refuse string methods whose result would exceed max_string before computing it."""
        if not isinstance(obj, str):
            return
        lim = self.limits.max_string
        size = None
        if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            n = obj.count(args[0]) if args[0] else len(obj) + 1
            size = len(obj) + n * (len(args[1]) - len(args[0]))
        elif name == "join" and args:
            try:
                items = list(args[0])
                size = sum(len(str(x)) for x in items) + len(obj) * max(len(items) - 1, 0)
            except TypeError:
                size = None
        elif name == "zfill" and args and isinstance(args[0], int):
            size = args[0]
        if size is not None and size > lim:
            raise LimitExceeded("max_string", lim, f"str.{name} would make {size} characters; the limit max_string "
                                                   f"is {lim}", where=_loc(node))

    def site(self, node: ast.Call) -> CallSite:
        stmt = self._stmt
        source = ast.get_source_segment(self.program.source, stmt) if stmt is not None else ""
        target = None
        if isinstance(stmt, ast.Assign) and stmt.value is node and len(stmt.targets) == 1 \
                and isinstance(stmt.targets[0], ast.Name):
            target = stmt.targets[0].id
        return CallSite(node.lineno, node.col_offset, getattr(node, "end_lineno", None), source or "", target)

    def call_tool(self, node: ast.Call, sig, scope: ChainMap) -> Any:
        args = [self.expr(a, scope, lazy=True) for a in node.args]
        kwargs = {kw.arg: self.expr(kw.value, scope, lazy=True) for kw in node.keywords}
        bound, problems = sig.bind(args, kwargs)
        where = _loc(node, tool=sig.tool)
        if problems:
            raise ToolArgumentError("; ".join(problems), where=where)
        self.budget.tool_call(where)
        step = self.caller.begin(sig, self.site(node))
        where = _loc(node, tool=sig.tool, step=step)
        if self.pool is None:
            return self.invoke(step, sig, {k: self.resolve(v) for k, v in bound.items()}, where)
        future = self.pool.submit(self.invoke_pending, step, sig, bound, where)
        self.futures.append(future)
        return Pending(future)

    def invoke_pending(self, step: int, sig, bound: dict[str, Any], where: Location) -> Any:
        args = {}
        for k, v in bound.items():
            if isinstance(v, Pending):
                exc = v.future.exception()
                if exc is not None:
                    raise ToolError(f"input '{k}' of {sig.name} failed earlier: {exc}", where=where)
                v = v.future.result()
            args[k] = v
        return self.invoke(step, sig, args, where)

    def invoke(self, step: int, sig, args: dict[str, Any], where: Location) -> Any:
        try:
            return self.caller.call(step, sig, args)
        except VistraceError as exc:
            raise exc.with_location(where)
        except Exception as exc:  # noqa: BLE001 - a crashing tool is reported as that tool's error
            raise ToolError(f"{sig.tool} failed: {type(exc).__name__}: {exc}", where=where) from exc

    def special_result(self, node: ast.Call, scope: ChainMap) -> Any:
        var = node.args[0] if node.args else next(kw.value for kw in node.keywords if kw.arg == "var")
        value = self.resolve(self.expr(var, scope, lazy=True))
        self.result, self.result_set = value, True
        return value

    def special_eval(self, node: ast.Call, scope: ChainMap) -> Any:
        """VisProg's EVAL: the expression string is parsed and run by this interpreter, never by eval()."""
        expr = node.args[0] if node.args else next(kw.value for kw in node.keywords if kw.arg == "expr")
        text = self.expr(expr, scope)
        if not isinstance(text, str):
            raise RuntimeProgramError("EVAL needs a string expression", where=_loc(node))
        tree, translated, err = translate_eval(text)
        if err:
            raise RuntimeProgramError(err, hint=f"translated expression: {translated}", where=_loc(node))
        # VisProg's rule: string variables 'yes'/'no' take part as booleans, digit strings as numbers.
        view = {}
        for key, value in scope.items():
            value = self.resolve(value) if isinstance(value, Pending) else value
            if isinstance(value, str) and value.strip().lower() in ("yes", "no"):
                value = value.strip().lower() == "yes"
            elif isinstance(value, str) and value.strip().isdecimal():
                value = int(value.strip())
            view[key] = value
        inner = ChainMap(view, self._module)
        try:
            return self.expr(tree.body, inner)
        except VistraceError as exc:
            exc.where = Location(node.lineno, node.col_offset, exc.where.step, exc.where.tool)
            exc.message = f"in EVAL expression `{translated}`: {exc.message}"
            raise


def _as_load(target: ast.expr) -> ast.expr:
    if isinstance(target, ast.Name):
        return ast.copy_location(ast.Name(id=target.id, ctx=ast.Load()), target)
    if isinstance(target, ast.Subscript):
        return ast.copy_location(ast.Subscript(value=target.value, slice=target.slice, ctx=ast.Load()), target)
    raise RuntimeProgramError("augmented assignment needs a name or a subscript", where=_loc(target))
