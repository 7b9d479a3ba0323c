"""Static checking: every problem of a program, found before it runs, with line:col, text and hint.

The checker resolves names (tools, aliases, builtins, program functions, inputs, variables),
binds tool arguments against the tool signatures, infers simple types to catch wrong argument
types, runs the tools' literal checks (e.g. VPEval's ``'A,B,relation'`` strings) and rejects every
construct outside the language.  It reports all problems at once: that list is what a planner gets
back to repair its program.
"""

from __future__ import annotations

import ast
import difflib
import typing
from typing import Any

from vistrace.signature import ANY, Signature, accepts, type_name

from .interface import ToolTable
from .limits import Limits
from .problems import Problem
from .program import SPECIAL_FORMS, InputSpec, Program, translate_eval
from .safety import ALLOWED_TYPES, PLAIN_TYPES, REJECTED, SAFE_BUILTINS, SAFE_METHODS

_BUILTIN_RETURNS = {"len": int, "str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
                    "sorted": list, "tuple": tuple, "set": set, "any": bool, "all": bool, "range": list,
                    "enumerate": list, "zip": list, "reversed": list, "abs": ANY, "round": ANY}


def value_types() -> dict[str, type]:
    from vistrace.values import VALUE_TYPES

    return VALUE_TYPES


class _Scope:
    def __init__(self, names: dict[str, Any] | None = None, *, in_function: bool = False, parent: "_Scope | None" = None):
        self.names: dict[str, Any] = dict(names or {})
        self.in_function = in_function
        self.parent = parent

    def lookup(self, name: str):
        s: _Scope | None = self
        while s is not None:
            if name in s.names:
                return True, s.names[name]
            s = s.parent
        return False, None

    def child(self) -> "_Scope":
        return _Scope(in_function=self.in_function, parent=self)


class Checker:
    def __init__(self, program: Program, tools: ToolTable, limits: Limits | None = None):
        self.program = program
        self.tools = tools
        self.limits = limits or Limits()
        self.problems: list[Problem] = []
        self.free: dict[str, Any] = {}   # module-level names read before assignment: the inputs
        self.loop_depth = 0

    # reporting ----------------------------------------------------------------------------
    def report(self, node: ast.AST, message: str, hint: str | None = None, code: str = "error",
               severity: str = "error", line_offset: int = 0) -> None:
        line = getattr(node, "lineno", 1) + line_offset
        col = getattr(node, "col_offset", 0)
        text = ast.get_source_segment(self.program.source, node) if not line_offset else ""
        if not text:
            try:
                text = ast.unparse(node)
            except Exception:  # noqa: BLE001 - unparse of odd nodes is best effort
                text = ""
        text = (text or "").splitlines()[0] if text else ""
        self.problems.append(Problem(line, col, message, text=text, hint=hint, code=code, severity=severity))

    # entry --------------------------------------------------------------------------------
    def run(self) -> list[Problem]:
        prog = self.program
        module = _Scope({name: "function" for name in prog.functions})
        body = prog.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        for stmt in body:
            if isinstance(stmt, ast.FunctionDef):
                self.check_function(stmt, module)
            else:
                self.stmt(stmt, module)
        if prog.style != "function":
            prog.inputs = [InputSpec(n, type_name(t) if t is not ANY else "") for n, t in self.free.items()]
        self.problems.sort(key=lambda p: (p.line, p.col))
        return self.problems

    # functions ----------------------------------------------------------------------------
    def annotation_type(self, node: ast.expr | None, where: ast.AST) -> Any:
        if node is None:
            return ANY
        if isinstance(node, ast.Constant) and node.value is None:
            return type(None)
        if isinstance(node, ast.Name):
            if node.id in value_types():
                return value_types()[node.id]
            if node.id in PLAIN_TYPES:
                return PLAIN_TYPES[node.id] if node.id != "Any" else ANY
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in PLAIN_TYPES:
            return PLAIN_TYPES[node.value.id]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            left, right = self.annotation_type(node.left, where), self.annotation_type(node.right, where)
            return typing.Union[left, right] if ANY not in (left, right) else ANY
        known = ", ".join(sorted(value_types()) + sorted(k for k in PLAIN_TYPES if k != "Any"))
        self.report(node, f"unknown type '{ast.unparse(node)}' in annotation", hint=f"known types: {known}")
        return ANY

    def check_function(self, fn: ast.FunctionDef, module: _Scope) -> None:
        if fn.name.startswith("_"):
            self.report(fn, f"names starting with '_' are not allowed: '{fn.name}'", code="rejected")
        if fn.decorator_list:
            self.report(fn.decorator_list[0], "decorators are not allowed", hint="write a plain def")
        a = fn.args
        if a.vararg or a.kwarg:
            self.report(a.vararg or a.kwarg, "*args and **kwargs are not allowed", hint="name every input")
        scope = _Scope(parent=module, in_function=True)
        for p in list(a.posonlyargs) + list(a.args) + list(a.kwonlyargs):
            if p.arg.startswith("_"):
                self.report(p, f"names starting with '_' are not allowed: '{p.arg}'")
            scope.names[p.arg] = self.annotation_type(p.annotation, p)
        for d in list(a.defaults) + [d for d in a.kw_defaults if d is not None]:
            if not isinstance(d, ast.Constant):
                self.report(d, "default values must be literals", hint="use a number, string, True/False or None")
        self.annotation_type(fn.returns, fn)
        body = fn.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        for stmt in body:
            self.stmt(stmt, scope)

    # statements ---------------------------------------------------------------------------
    def rejected(self, node: ast.AST, at: ast.AST | None = None) -> bool:
        """Report ``node`` if it is outside the language; ``at`` is where (operators carry no position)."""
        if type(node) in REJECTED:
            msg, hint = REJECTED[type(node)]
            self.report(at or node, msg, hint=hint or None, code="rejected")
            return True
        if type(node) not in ALLOWED_TYPES:
            self.report(at or node, f"'{type(node).__name__}' is not allowed in programs", code="rejected")
            return True
        return False

    def stmts(self, body: list[ast.stmt], scope: _Scope) -> None:
        for s in body:
            self.stmt(s, scope)

    def stmt(self, node: ast.stmt, scope: _Scope) -> None:
        if isinstance(node, ast.FunctionDef):
            self.report(node, "functions can only be defined at the top level of a program",
                        hint="move this def out of the block", code="rejected")
            return
        if self.rejected(node):
            return
        if isinstance(node, ast.Expr):
            self.expr(node.value, scope)
        elif isinstance(node, ast.Assign):
            t = self.expr(node.value, scope)
            for target in node.targets:
                self.store(target, scope, t if len(node.targets) == 1 else ANY)
        elif isinstance(node, ast.AnnAssign):
            t = self.expr(node.value, scope) if node.value is not None else ANY
            ann = self.annotation_type(node.annotation, node)
            self.store(node.target, scope, ann if ann is not ANY else t)
        elif isinstance(node, ast.AugAssign):
            if self.rejected(node.op, node):
                return
            self.expr(node.value, scope)
            if isinstance(node.target, ast.Name):
                self.load_name(node.target, scope)
            self.store(node.target, scope, ANY, augmented=True)
        elif isinstance(node, ast.If):
            self.expr(node.test, scope)
            self.stmts(node.body, scope)
            self.stmts(node.orelse, scope)
        elif isinstance(node, (ast.For, ast.While)):
            if node.orelse:
                self.report(node.orelse[0], f"'{type(node).__name__.lower()} ... else' is not supported",
                            hint="use a flag variable", code="rejected")
            if isinstance(node, ast.For):
                self.expr(node.iter, scope)
                self.store(node.target, scope, ANY)
            else:
                self.expr(node.test, scope)
            self.loop_depth += 1
            self.stmts(node.body, scope)
            self.loop_depth -= 1
        elif isinstance(node, (ast.Break, ast.Continue)):
            if not self.loop_depth:
                self.report(node, f"'{type(node).__name__.lower()}' outside a loop")
        elif isinstance(node, ast.Return):
            if not scope.in_function:
                self.report(node, "'return' outside a function",
                            hint="the last expression (or the variable 'result') is the program's result")
            if node.value is not None:
                self.expr(node.value, scope)

    def store(self, target: ast.expr, scope: _Scope, t: Any, augmented: bool = False) -> None:
        if isinstance(target, ast.Name):
            if target.id.startswith("_"):
                self.report(target, f"names starting with '_' are not allowed: '{target.id}'", code="rejected")
            elif target.id in SAFE_BUILTINS or self.tools.signature(target.id) is not None:
                self.report(target, f"'{target.id}' names a tool or builtin; assigning to it hides it",
                            hint="choose another variable name", severity="warning", code="shadow")
            scope.names[target.id] = t
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                if isinstance(elt, ast.Starred):
                    self.rejected(elt)
                else:
                    self.store(elt, scope, ANY)
        elif isinstance(target, ast.Subscript):
            self.expr(target.value, scope)
            self.expr(target.slice, scope)
        elif isinstance(target, ast.Attribute):
            self.report(target, "attributes cannot be assigned: values are immutable",
                        hint="make a new value with a tool instead", code="rejected")
        else:
            self.rejected(target)

    # expressions --------------------------------------------------------------------------
    def load_name(self, node: ast.Name, scope: _Scope) -> Any:
        name = node.id
        if name.startswith("_"):
            self.report(node, f"names starting with '_' are not allowed: '{name}'", code="rejected")
            return ANY
        found, t = scope.lookup(name)
        if found and t == "function":
            self.report(node, f"'{name}' is a program function and can only be called", hint=f"call it: {name}(...)")
            return ANY
        if found:
            return t
        if name in ("True", "False", "None"):
            return ANY
        if self.tools.signature(name) is not None or name in SAFE_BUILTINS or name in SPECIAL_FORMS:
            self.report(node, f"'{name}' is a tool or builtin and can only be called", hint=f"call it: {name}(...)")
            return ANY
        if scope.in_function:
            visible = [n for s in _chain(scope) for n in s.names]
            close = difflib.get_close_matches(name, visible, n=1)
            self.report(node, f"name '{name}' is not defined",
                        hint=f"did you mean '{close[0]}'?" if close else "inputs are the function's parameters")
            return ANY
        self.free.setdefault(name, ANY)
        return ANY

    def expr(self, node: ast.expr, scope: _Scope) -> Any:  # noqa: C901 - one dispatch over node kinds
        if self.rejected(node):
            return ANY
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bytes):
                self.report(node, "bytes literals are not supported", code="rejected")
            return type(node.value) if node.value is not None else type(None)
        if isinstance(node, ast.Name):
            return self.load_name(node, scope)
        if isinstance(node, ast.Call):
            return self.call(node, scope)
        if isinstance(node, ast.Attribute):
            return self.attribute(node, scope, call=False)
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            for e in node.elts:
                self.expr(e, scope)
            return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)]
        if isinstance(node, ast.Dict):
            for k in node.keys:
                if k is None:
                    self.report(node, "'**' unpacking is not allowed", code="rejected")
                else:
                    self.expr(k, scope)
            for v in node.values:
                self.expr(v, scope)
            return dict
        if isinstance(node, ast.BinOp):
            if self.rejected(node.op, node):
                return ANY
            left, right = self.expr(node.left, scope), self.expr(node.right, scope)
            if left is str and right is str and isinstance(node.op, ast.Add):
                return str
            if left in (int, float) and right in (int, float) and not isinstance(node.op, ast.Div):
                return float if float in (left, right) else int
            return float if isinstance(node.op, ast.Div) else ANY
        if isinstance(node, ast.UnaryOp):
            if self.rejected(node.op, node):
                return ANY
            return self.expr(node.operand, scope) if not isinstance(node.op, ast.Not) else bool
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self.expr(v, scope)
            return ANY
        if isinstance(node, ast.Compare):
            self.expr(node.left, scope)
            for op, c in zip(node.ops, node.comparators):
                self.rejected(op)
                self.expr(c, scope)
            return bool
        if isinstance(node, ast.IfExp):
            self.expr(node.test, scope)
            a, b = self.expr(node.body, scope), self.expr(node.orelse, scope)
            return a if a == b else ANY
        if isinstance(node, ast.Subscript):
            self.expr(node.value, scope)
            self.expr(node.slice, scope)
            return ANY
        if isinstance(node, ast.Slice):
            for part in (node.lower, node.upper, node.step):
                if part is not None:
                    self.expr(part, scope)
            return ANY
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = scope.child()
            for gen in node.generators:
                if gen.is_async:
                    self.report(node, "async comprehensions are not allowed", code="rejected")
                self.expr(gen.iter, inner)
                self.store(gen.target, inner, ANY)
                for cond in gen.ifs:
                    self.expr(cond, inner)
            if isinstance(node, ast.DictComp):
                self.expr(node.key, inner)
                self.expr(node.value, inner)
                return dict
            self.expr(node.elt, inner)
            return {ast.ListComp: list, ast.SetComp: set, ast.GeneratorExp: list}[type(node)]
        if isinstance(node, ast.JoinedStr):
            for v in node.values:
                if isinstance(v, ast.FormattedValue):
                    self.expr(v.value, scope)
                    if v.format_spec is not None:
                        self.expr(v.format_spec, scope)
            return str
        if isinstance(node, ast.FormattedValue):
            self.expr(node.value, scope)
            return str
        return ANY

    def attribute(self, node: ast.Attribute, scope: _Scope, call: bool) -> Any:
        if node.attr.startswith("_"):
            self.report(node, f"attributes starting with '_' are not allowed: '{node.attr}'", code="rejected",
                        hint="use the public fields and methods of the value")
            return ANY
        owner = self.expr(node.value, scope)
        if isinstance(owner, type) and owner in value_types().values():
            if node.attr not in owner.public:
                close = difflib.get_close_matches(node.attr, sorted(owner.public), n=1)
                self.report(node, f"{owner.type_name} has no attribute '{node.attr}'",
                            hint=f"did you mean '{close[0]}'?" if close else
                            f"public: {', '.join(sorted(owner.public))}")
        elif isinstance(owner, type) and owner in SAFE_METHODS:
            if not call or node.attr not in SAFE_METHODS[owner]:
                what = "method" if call else "attribute"
                self.report(node, f"{what} '{node.attr}' of {owner.__name__} is not available", code="rejected",
                            hint="allowed: " + ", ".join(sorted(SAFE_METHODS[owner])))
        return ANY

    def call(self, node: ast.Call, scope: _Scope) -> Any:
        for kw in node.keywords:
            if kw.arg is None:
                self.report(kw.value, "'**' unpacking is not allowed", hint="pass arguments by name", code="rejected")
            elif kw.arg.startswith("_"):
                self.report(kw, f"argument names starting with '_' are not allowed: '{kw.arg}'", code="rejected")
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.report(node, "'*' unpacking is not allowed", hint="pass arguments one by one", code="rejected")
            return ANY
        func = node.func
        if isinstance(func, ast.Attribute):
            self.attribute(func, scope, call=True)
            self.args(node, scope)
            return ANY
        if not isinstance(func, ast.Name):
            self.report(node, "only tools, allowed builtins, program functions and value methods can be called",
                        code="rejected")
            self.expr(func, scope)
            self.args(node, scope)
            return ANY
        name = func.id
        found, kind = scope.lookup(name)
        if found and kind == "function":
            return self.program_call(node, scope)
        if found:
            self.report(func, f"'{name}' is a variable, not a tool", hint="only tools and functions can be called")
            self.args(node, scope)
            return ANY
        if name in SPECIAL_FORMS:
            return self.special(node, scope)
        if name in SAFE_BUILTINS:
            self.args(node, scope)
            return _BUILTIN_RETURNS.get(name, ANY)
        sig = self.tools.signature(name)
        if sig is None:
            hint = self.tools.suggest(name)
            if not hint:
                close = difflib.get_close_matches(name, sorted(SAFE_BUILTINS | SPECIAL_FORMS), n=1)
                hint = f"did you mean '{close[0]}'?" if close else "`vistrace tools` lists the tools"
            if name.startswith("_"):
                self.report(func, f"names starting with '_' are not allowed: '{name}'", code="rejected")
            else:
                self.report(func, f"unknown tool '{name}'", hint=hint, code="unknown-tool")
            self.args(node, scope)
            return ANY
        return self.tool_call(node, sig, scope)

    def args(self, node: ast.Call, scope: _Scope) -> tuple[list[Any], dict[str, Any]]:
        pos = [self.expr(a, scope) for a in node.args if not isinstance(a, ast.Starred)]
        kws = {kw.arg: self.expr(kw.value, scope) for kw in node.keywords if kw.arg is not None}
        return pos, kws

    def tool_call(self, node: ast.Call, sig: Signature, scope: _Scope) -> Any:
        pos_types, kw_types = self.args(node, scope)
        nodes_by_param, problems = sig.bind(list(node.args), {kw.arg: kw.value for kw in node.keywords if kw.arg})
        for msg in problems:
            hint = None
            if " — " in msg:
                msg, hint = msg.split(" — ", 1)
            self.report(node, msg, hint=hint, code="arguments")
        types_by_param, _ = sig.bind(pos_types, kw_types)
        for pname, arg_node in nodes_by_param.items():
            param = sig.param(pname)
            if param is None or not isinstance(arg_node, ast.AST):
                continue
            t = types_by_param.get(pname, ANY)
            shown = next((a for a, tgt in sig.renames.items() if tgt == pname), pname)
            if accepts(param.annotation, t) is False:
                self.report(arg_node, f"argument '{shown}' of {sig.name} expects {type_name(param.annotation)}, "
                                      f"got {type_name(t)}", code="type")
            check = sig.literal_checks.get(pname)
            if check is not None and isinstance(arg_node, ast.Constant):
                msg = check(arg_node.value)
                if msg:
                    prefix = "" if msg.startswith((sig.name, sig.tool)) else f"{sig.name}: "
                    self.report(arg_node, prefix + msg, code="literal")
        return sig.returns

    def program_call(self, node: ast.Call, scope: _Scope) -> Any:
        self.args(node, scope)
        fn = self.program.functions[node.func.id]
        a = fn.args
        params = [p.arg for p in list(a.posonlyargs) + list(a.args)]
        if len(node.args) > len(params):
            self.report(node, f"{fn.name} takes {len(params)} positional arguments, got {len(node.args)}")
        names = set(params) | {p.arg for p in a.kwonlyargs}
        for kw in node.keywords:
            if kw.arg and kw.arg not in names:
                self.report(kw, f"{fn.name} has no argument '{kw.arg}'")
        return self.annotation_type(fn.returns, fn) if fn.returns is not None else ANY

    def special(self, node: ast.Call, scope: _Scope) -> Any:
        name = node.func.id
        kwargs = {kw.arg: kw.value for kw in node.keywords if kw.arg}
        if name == "RESULT":
            var = kwargs.get("var", node.args[0] if node.args else None)
            if var is None or len(node.args) + len(kwargs) != 1:
                self.report(node, "RESULT takes one argument: RESULT(var=NAME)")
                return ANY
            return self.expr(var, scope)
        expr = kwargs.get("expr", node.args[0] if node.args else None)
        if expr is None or len(node.args) + len(kwargs) != 1:
            self.report(node, "EVAL takes one argument: EVAL(expr=\"...\")")
            return ANY
        if not (isinstance(expr, ast.Constant) and isinstance(expr.value, str)):
            self.report(expr, "EVAL's expression must be a string literal", code="rejected")
            return ANY
        tree, text, err = translate_eval(expr.value, self.limits.max_nesting)
        if err:
            self.report(expr, err, hint=f"translated expression: {_clip(text)}")
            return ANY
        before = len(self.problems)
        self.expr(tree.body, scope)
        # Problems inside the EVAL string are reported at the EVAL call's position.
        for i in range(before, len(self.problems)):
            p = self.problems[i]
            self.problems[i] = type(p)(node.lineno, expr.col_offset, f"in EVAL expression: {p.message}",
                                       text=text, hint=p.hint, code=p.code, severity=p.severity)
        return ANY


def _clip(text: str, n: int = 200) -> str:
    return text if len(text) <= n else text[:n] + "…"


def _chain(scope: _Scope):
    s: _Scope | None = scope
    while s is not None:
        yield s
        s = s.parent


def check(program: Program, tools: ToolTable, limits: Limits | None = None) -> list[Problem]:
    """Every problem of ``program`` (errors and warnings), sorted by position; fills script inputs."""
    return Checker(program, tools, limits).run()


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]
