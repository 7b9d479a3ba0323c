"""Compile a checked syntax tree once into Python closures, then run them many times.

Each node becomes a small closure ``fn(env) -> value`` built by *our* code: no program text is
ever handed to Python's ``eval``/``exec``/``compile``.  Dispatch on node kinds, tool lookup,
argument binding and call-site text happen once, at compile time, so a step at run time costs a
few closure calls.  Locations for errors are built only when something fails.
"""

from __future__ import annotations

import ast
import operator
import re
import threading
from typing import Any, Callable

from vistrace.errors import LimitExceeded, Location, RuntimeProgramError, ToolArgumentError, VistraceError

from .guards import PRECHECKED, compare_guard, hash_guard, length, precheck_binop, slice_guard
from .limits import _ELEMENT_BYTES, _NESTED, _NESTED_SET
from .safety import ALLOWED_TYPES, REJECTED

Fn = Callable[[dict], Any]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
           ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
           ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not}
_SPEC_NUMBER = re.compile(r"\d+")
SIZED = (str, list, tuple, dict, set, frozenset)
_DICT_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))  # what d.keys()/values()/items() return


def compile_call(comp: "Compiler", node: ast.Call) -> Fn:
    global _compile_call
    if _compile_call is None:
        from .calls import compile_call as impl

        _compile_call = impl
    return _compile_call(comp, node)


_compile_call = None


class Pending:
    """A tool result that is still being computed on a worker thread."""

    __slots__ = ("future",)

    def __init__(self, future):
        self.future = future


class Return(Exception):
    def __init__(self, value: Any):
        self.value = value


class Break(Exception):
    pass


class Continue(Exception):
    pass


def loc(node, **kw) -> Location:
    return Location(line=getattr(node, "lineno", None), col=getattr(node, "col_offset", None), **kw)


def resolve(value: Any) -> Any:
    return value.future.result() if type(value) is Pending else value


class Compiler:
    """Turns statements and expressions into closures bound to one interpreter (its budget, caller, tools)."""

    def __init__(self, program, tools):
        self.program = program
        self.tools = tools
        self.source = program.source
        self._lines = self.source.splitlines(keepends=True)
        self.current_stmt: ast.stmt | None = None
        self.bodies: dict[str, Fn] = {}      # program function name -> compiled body
        self.evals: dict[str, Fn] = {}       # EVAL expression text -> compiled expression
        self.top: list | None = None         # compiled top-level statements
        self.bindings: dict[tuple, tuple] = {}  # (signature, call shape) -> argument plan
        self.lock = threading.Lock()         # one run at a time uses this compiled program
        # Set by attach() for each run; closures read them at run time, so compiled code is reused.
        self.interp = None
        self.budget = None
        self.limits = None

    def attach(self, interp) -> None:
        """Point the compiled closures at one run's interpreter, budget and limits."""
        self.interp, self.budget, self.limits = interp, interp.budget, interp.limits

    # ------------------------------------------------------------------------------- helpers
    def segment(self, node: ast.AST) -> str:
        """Source text of a node, from lines split once (``ast.get_source_segment`` re-splits every call)."""
        try:
            l1, l2 = node.lineno - 1, node.end_lineno - 1
            c1, c2 = node.col_offset, node.end_col_offset
            if not (0 <= l1 <= l2 < len(self._lines)):
                return ""
        except (AttributeError, TypeError):
            return ""
        if l1 == l2:
            return self._lines[l1].encode()[c1:c2].decode(errors="replace")
        first = self._lines[l1].encode()[c1:].decode(errors="replace")
        last = self._lines[l2].encode()[:c2].decode(errors="replace")
        return first + "".join(self._lines[l1 + 1:l2]) + last

    def wrap(self, exc: BaseException, node: ast.AST) -> BaseException:
        """A Python error from one primitive operation, as a located program error."""
        if isinstance(exc, VistraceError):
            return exc.with_location(loc(node))
        if isinstance(exc, RecursionError):
            return LimitExceeded("max_nesting", self.limits.max_nesting, "expression nests too deeply", where=loc(node))
        if isinstance(exc, MemoryError):
            return LimitExceeded("memory", 0, "operation ran out of memory", where=loc(node))
        text = self.segment(node)
        shown = f" in `{text}`" if text and len(text) < 80 else ""
        said = str(exc)
        said = said if len(said) <= 300 else said[:300] + "…"  # messages can quote huge values
        return RuntimeProgramError(f"{type(exc).__name__}: {said}{shown}", where=loc(node))

    def refuse(self, node: ast.AST, message: str, hint: str | None = None) -> Fn:
        def fn(env):
            raise RuntimeProgramError(message, hint=hint, where=loc(node))
        return fn

    # ---------------------------------------------------------------------------- statements
    def block(self, body: list[ast.stmt]) -> Fn:
        fns = [self.stmt(s) for s in body]
        if len(fns) == 1:
            return fns[0]

        def run(env):
            for f in fns:
                f(env)
        return run

    def stmt(self, node: ast.stmt) -> Fn:  # noqa: C901 - one dispatch over statement kinds
        """A closure that executes the statement and returns an expression statement's value."""
        if type(node) not in ALLOWED_TYPES or type(node) is ast.FunctionDef:
            return self.refuse(node, REJECTED.get(type(node), (f"'{type(node).__name__}' is not allowed",))[0])
        outer, self.current_stmt = self.current_stmt, node
        try:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                    and not node.targets[0].id.startswith("_"):
                return self._assign_name(node)
            body = self._stmt_body(node)
        finally:
            self.current_stmt = outer
        c = self

        def counted(env):
            b = c.budget
            b.steps += 1
            if b.steps > b._max_steps or not b.steps & 31:
                b.after_step(node)
            return body(env)
        return counted

    def _assign_name(self, node: ast.Assign) -> Fn:
        """The commonest statement, ``NAME = expression``, as one closure (counting included)."""
        value, name, c = self.expr(node.value, lazy=True), node.targets[0].id, self

        def assign_name(env):
            b = c.budget
            b.steps += 1
            if b.steps > b._max_steps or not b.steps & 31:
                b.after_step(node)
            v = env[name] = value(env)
            return v
        return assign_name

    def _stmt_body(self, node: ast.stmt) -> Fn:  # noqa: C901
        if isinstance(node, ast.Expr):
            return self.expr(node.value, lazy=True)
        if isinstance(node, ast.Assign):
            value = self.expr(node.value, lazy=True)
            stores = [self.store(t) for t in node.targets]
            if len(stores) == 1:
                store = stores[0]

                def assign(env):
                    v = value(env)
                    store(env, v)
                    return v
                return assign

            def assign_many(env):
                v = value(env)
                for s in stores:
                    s(env, v)
                return v
            return assign_many
        if isinstance(node, ast.AnnAssign):
            if node.value is None:
                return lambda env: None
            value, store = self.expr(node.value, lazy=True), self.store(node.target)
            return lambda env: store(env, value(env))
        if isinstance(node, ast.AugAssign):
            current = self.expr(_as_load(node.target))
            value = self.expr(node.value)
            store = self.store(node.target)
            op = self.binop_fn(node.op, node)
            return lambda env: store(env, op(current(env), value(env)))
        if isinstance(node, ast.If):
            test, yes = self.truth(node.test), self.block(node.body)
            no = self.block(node.orelse) if node.orelse else None

            def if_(env):
                if test(env):
                    yes(env)
                elif no is not None:
                    no(env)
            return if_
        if isinstance(node, ast.For):
            return self.for_loop(node)
        if isinstance(node, ast.While):
            test, body = self.truth(node.test), self.block(node.body)
            c = self

            def while_(env):
                while test(env):
                    c.budget.iteration(node)
                    try:
                        body(env)
                    except Break:
                        break
                    except Continue:
                        continue
            return while_
        if isinstance(node, ast.Return):
            value = self.expr(node.value) if node.value is not None else (lambda env: None)

            def return_(env):
                raise Return(value(env))
            return return_
        if isinstance(node, ast.Break):
            def break_(env):
                raise Break()
            return break_
        if isinstance(node, ast.Continue):
            def continue_(env):
                raise Continue()
            return continue_
        if isinstance(node, ast.Pass):
            return lambda env: None
        return self.refuse(node, f"'{type(node).__name__}' is not supported")

    def for_loop(self, node: ast.For) -> Fn:
        items, store, body = self.expr(node.iter), self.store(node.target), self.block(node.body)
        c = self

        def for_(env):
            try:
                for item in c.iterable(items(env), node.iter):
                    c.budget.iteration(node)
                    store(env, item)
                    try:
                        body(env)
                    except Break:
                        break
                    except Continue:
                        continue
            except RuntimeError as exc:  # e.g. "dictionary changed size during iteration"
                raise c.wrap(exc, node.iter) from None
        return for_

    def store(self, target: ast.expr) -> Callable[[dict, Any], None]:
        if isinstance(target, ast.Name):
            name = target.id
            if name.startswith("_"):
                msg = f"names starting with '_' are not allowed: '{name}'"

                def bad(env, value):
                    raise RuntimeProgramError(msg, where=loc(target))
                return bad

            def set_name(env, value):
                env[name] = value
            return set_name
        if isinstance(target, (ast.Tuple, ast.List)):
            parts = [self.store(t) for t in target.elts]
            n = len(parts)

            def unpack(env, value):
                value = self.iterable(resolve(value), target)
                size = length(value, n)
                if size != n:  # checked before the values are made: a, b = range(10**10) must not materialise
                    raise RuntimeProgramError(f"cannot unpack {size} values into {n} names", where=loc(target))
                items = list(value)
                if len(items) != n:
                    raise RuntimeProgramError(f"cannot unpack {len(items)} values into {n} names", where=loc(target))
                for part, item in zip(parts, items):
                    part(env, item)
            return unpack
        if isinstance(target, ast.Subscript):
            container_fn, key_fn = self.expr(target.value), self.expr(target.slice)

            def set_item(env, value):
                container, key = container_fn(env), key_fn(env)
                if not isinstance(container, (list, dict)):
                    raise RuntimeProgramError(f"a {type(container).__name__} cannot be changed: values are immutable",
                                              where=loc(target))
                if type(key) is tuple and not _NESTED_SET.isdisjoint(map(type, key)):
                    self.budget.measure(key, target)  # hashed: a nested tuple is walked (and can crash C's stack)
                size = len(container)
                if type(key) is slice:  # x[a:b] = value copies value's items in first: bound them before
                    slice_guard(self.limits, length(resolve(value), 0), size, target)
                try:
                    container[key] = resolve(value)
                except Exception as exc:  # noqa: BLE001
                    raise self.wrap(exc, target) from None
                self.budget.check_size(container, target)
                if len(container) > size:
                    b = self.budget
                    b.memory += _ELEMENT_BYTES.get(type(container), 8)
                    if b.memory > b._max_memory:
                        b.alloc(0, target)
            return set_item
        message = f"cannot assign to {type(target).__name__}"

        def bad_target(env, value):
            raise RuntimeProgramError(message, where=loc(target))
        return bad_target

    # --------------------------------------------------------------------------- expressions
    def truth(self, node: ast.expr) -> Fn:
        value = self.expr(node)

        def test(env):
            try:
                return bool(value(env))
            except VistraceError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise self.wrap(exc, node) from None
        return test

    def iterable(self, value: Any, node: ast.AST):
        value = resolve(value)
        if isinstance(value, (list, tuple, str, range, dict, set, frozenset, *_DICT_VIEWS)) or (
                hasattr(value, "__iter__") and hasattr(value, "summary")):
            return value
        raise RuntimeProgramError(f"cannot iterate over {type(value).__name__}", where=loc(node))

    def expr(self, node: ast.expr, lazy: bool = False) -> Fn:  # noqa: C901 - one dispatch over node kinds
        """A closure computing the expression; ``lazy`` lets a tool result stay pending."""
        if type(node) not in ALLOWED_TYPES:
            return self.refuse(node, REJECTED.get(type(node), (f"'{type(node).__name__}' is not allowed",))[0])
        if isinstance(node, ast.Constant):
            const = node.value
            return lambda env: const
        if isinstance(node, ast.Name):
            return self.name(node, lazy)
        if isinstance(node, ast.Call):
            call = compile_call(self, node)
            if lazy:
                return call
            return lambda env: resolve(call(env))
        if isinstance(node, ast.BinOp):
            left, right, op = self.expr(node.left), self.expr(node.right), self.binop_fn(node.op, node)
            return lambda env: op(left(env), right(env))
        if isinstance(node, ast.UnaryOp):
            operand = self.expr(node.operand)
            if isinstance(node.op, ast.Not):
                test = self.truth(node.operand)
                return lambda env: not test(env)
            op = {ast.USub: operator.neg, ast.UAdd: operator.pos}.get(type(node.op))
            if op is None:
                return self.refuse(node, f"operator {type(node.op).__name__} is not allowed")
            return self.guarded(lambda env: op(operand(env)), node)
        if isinstance(node, ast.BoolOp):
            return self.boolop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.IfExp):
            test, yes, no = self.truth(node.test), self.expr(node.body), self.expr(node.orelse)
            return lambda env: yes(env) if test(env) else no(env)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            elts = [self.expr(e) for e in node.elts]
            kind = {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)]
            c = self
            if kind is set:
                return self.guarded(
                    lambda env: c.budget.made(set(hash_guard(c.budget, [e(env) for e in elts], node)), node), node)
            return self.guarded(lambda env: c.budget.made(kind([e(env) for e in elts]), node), node)
        if isinstance(node, ast.Dict):
            pairs = [(self.expr(k), self.expr(v)) for k, v in zip(node.keys, node.values)]
            c = self

            def dict_(env):
                items = [(k(env), v(env)) for k, v in pairs]
                hash_guard(c.budget, [k for k, _ in items], node)
                return c.budget.made(dict(items), node)
            return self.guarded(dict_, node)
        if isinstance(node, ast.Subscript):
            container, key = self.expr(node.value), self.expr(node.slice)
            c = self

            def subscript(env):
                obj, k = container(env), key(env)
                tk = type(k)
                if tk is tuple and not _NESTED_SET.isdisjoint(map(type, k)):
                    c.budget.measure(k, node)  # hashed
                value = obj[k]
                if tk is slice and type(value) in SIZED:
                    c.budget.made(value, node)  # a slice is a copy
                return value
            return self.guarded(subscript, node)
        if isinstance(node, ast.Slice):
            parts = [self.expr(p) if p is not None else (lambda env: None) for p in (node.lower, node.upper, node.step)]
            return lambda env: slice(parts[0](env), parts[1](env), parts[2](env))
        if isinstance(node, ast.Attribute):
            owner = self.expr(node.value)
            c = self
            return lambda env: c.interp.attribute(owner(env), node)
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            return self.comprehension(node)
        if isinstance(node, ast.JoinedStr):
            parts = [self.formatted(v) if isinstance(v, ast.FormattedValue) else (lambda env, s=str(v.value): s)
                     for v in node.values]
            c = self
            return lambda env: c.budget.made("".join([p(env) for p in parts]), node)
        if isinstance(node, ast.FormattedValue):
            return self.formatted(node)
        return self.refuse(node, f"'{type(node).__name__}' is not supported")

    def guarded(self, fn: Fn, node: ast.AST) -> Fn:
        def run(env):
            try:
                return fn(env)
            except (Return, Break, Continue):
                raise
            except Exception as exc:  # noqa: BLE001 - a failing primitive becomes a located program error
                raise self.wrap(exc, node) from None
        return run

    def name(self, node: ast.Name, lazy: bool) -> Fn:
        name = node.id

        def missing():
            if name in self.interp.functions:
                return RuntimeProgramError(f"'{name}' is a function; call it", where=loc(node))
            return RuntimeProgramError(f"name '{name}' is not defined", where=loc(node))

        if lazy:
            def load_lazy(env):
                try:
                    return env[name]
                except KeyError:
                    raise missing() from None
            return load_lazy

        def load(env):
            try:
                value = env[name]
            except KeyError:
                raise missing() from None
            return value.future.result() if type(value) is Pending else value
        return load

    def boolop(self, node: ast.BoolOp) -> Fn:
        values = [(self.expr(v), self.truth(v)) for v in node.values]
        is_and = isinstance(node.op, ast.And)

        def run(env):
            result = None
            for value, _ in values:
                result = value(env)
                try:
                    truth = bool(result)
                except Exception as exc:  # noqa: BLE001
                    raise self.wrap(exc, node) from None
                if truth != is_and:
                    return result
            return result
        return run

    def compare(self, node: ast.Compare) -> Fn:
        left = self.expr(node.left)
        rest = [(_CMPOPS[type(op)], type(op), self.expr(c)) for op, c in zip(node.ops, node.comparators)]
        c = self

        def run(env):
            a = left(env)
            try:
                for op, kind, comp in rest:
                    b = comp(env)
                    if type(a) in _NESTED or type(b) in _NESTED or type(b) is range:
                        compare_guard(c.budget, kind, a, b, node)
                    if not op(a, b):
                        return False
                    a = b
            except VistraceError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise self.wrap(exc, node) from None
            return True
        return run

    def formatted(self, node: ast.FormattedValue) -> Fn:
        value = self.expr(node.value)
        spec = self.expr(node.format_spec) if node.format_spec is not None else (lambda env: "")
        conversion = {ord("r"): repr, ord("a"): ascii, ord("s"): str}.get(node.conversion)
        c = self

        def run(env):
            v, s = value(env), spec(env)
            limit = c.limits.max_string
            for num in _SPEC_NUMBER.findall(s):
                if len(num) > 7 or int(num) > limit:
                    raise LimitExceeded("max_string", limit, f"format width {num} exceeds the limit max_string",
                                        where=loc(node))
            if type(v) in _NESTED:
                c.budget.measure(v, node, text=True)
            try:
                text = format(conversion(v) if conversion else v, s)
            except Exception as exc:  # noqa: BLE001
                raise self.wrap(exc, node) from None
            return c.budget.check_size(text, node)  # a part: the whole f-string is counted (made) once
        return run

    def binop_fn(self, op: ast.operator, node: ast.AST) -> Callable[[Any, Any], Any]:
        fn = _BINOPS.get(type(op))
        if fn is None:
            message = f"operator {type(op).__name__} is not allowed"

            def refused(a, b):
                raise RuntimeProgramError(message, where=loc(node))
            return refused
        c = self
        kind = type(op)

        def run(left, right):
            if kind in PRECHECKED:
                precheck_binop(kind, left, right, c.limits, node)
            try:
                result = fn(left, right)
            except Exception as exc:  # noqa: BLE001
                raise self.wrap(exc, node) from None
            if isinstance(result, SIZED) or type(result) is int:
                c.budget.made(result, node)
            return result
        return run

    def comprehension(self, node) -> Fn:
        gens = [(self.expr(g.iter), self.store(g.target), [self.truth(c) for c in g.ifs], g) for g in node.generators]
        is_dict = isinstance(node, ast.DictComp)
        if is_dict:
            key, val = self.expr(node.key), self.expr(node.value)
        else:
            elt = self.expr(node.elt)
        c = self

        def run(env):
            inner = dict(env)
            results: list = []
            iterable, iteration, limit = c.iterable, c.budget.iteration, c.limits.max_collection

            def loop(i: int) -> None:
                if i == len(gens):
                    results.append((key(inner), val(inner)) if is_dict else elt(inner))
                    if len(results) > limit:
                        self.budget.check_size(results, node)
                    return
                items, store, conds, gen = gens[i]
                for item in iterable(items(inner), gen.iter):
                    iteration(node)
                    store(inner, item)
                    if all(c(inner) for c in conds):
                        loop(i + 1)

            try:
                loop(0)
            except RuntimeError as exc:  # e.g. "dictionary changed size during iteration"
                raise c.wrap(exc, node) from None
            budget = c.budget
            if is_dict or isinstance(node, ast.SetComp):
                hash_guard(budget, [k for k, _ in results] if is_dict else results, node)
                try:
                    return budget.made((dict if is_dict else set)(results), node)
                except VistraceError:
                    raise
                except Exception as exc:  # noqa: BLE001 - e.g. an unhashable key
                    raise self.wrap(exc, node) from None
            return budget.made(results, node)
        return run


def _as_load(target: ast.expr) -> ast.expr:
    if isinstance(target, ast.Name):
        return ast.copy_location(ast.Name(id=target.id, ctx=ast.Load()), target)
    if isinstance(target, ast.Subscript):
        return ast.copy_location(ast.Subscript(value=target.value, slice=target.slice, ctx=ast.Load()), target)
    raise ToolArgumentError("augmented assignment needs a name or a subscript", where=loc(target))


__all__ = ["Break", "Compiler", "Continue", "Pending", "Return", "loc", "resolve"]
