"""Which steps of a run the final value rests on.

A backward slice over the program: start from what makes the result (the ``result`` variable, a
VisProg ``RESULT(var=...)``, a function's ``return``), follow the names each statement reads back to
the statements that wrote them, and cite the trace steps on those statements' lines.  An ``Answer``
value adds the steps it names as its own evidence; a VPEval score rests on every module.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from vistrace.sandbox.program import RESULT_NAMES

_EVAL_NAME = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _reads(node: ast.AST) -> set[str]:
    out: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            out.add(n.id)
        elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
            out.add(n.target.id)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "EVAL":
            for kw in n.keywords:  # VisProg's EVAL(expr="... {NAME} ...") reads names inside its string
                if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    out.update(_EVAL_NAME.findall(kw.value.value))
    return out


def _writes(stmt: ast.stmt) -> set[str]:
    return {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


def _is_result_call(stmt: ast.stmt) -> bool:
    value = getattr(stmt, "value", None)
    return isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "RESULT"


def _slice(stmts: list[ast.stmt], wanted: set[str], relevant: list[ast.stmt]) -> set[str]:
    """Walk ``stmts`` backwards adding those that write a wanted name; returns the names still wanted."""
    for s in reversed(stmts):
        if s in relevant:
            continue
        written = _writes(s)
        if not written & wanted:
            continue
        relevant.append(s)
        if isinstance(s, ast.Assign):  # an unconditional assignment replaces the earlier value
            wanted = wanted - written
        wanted = wanted | _reads(s)
    return wanted


def _top_statements(program) -> list[ast.stmt]:
    body = [s for s in program.tree.body if not isinstance(s, ast.FunctionDef)]
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return body


def relevant_statements(program) -> list[ast.stmt]:
    """The statements the result of ``program`` (a parsed :class:`~vistrace.sandbox.Program`) depends on."""
    relevant: list[ast.stmt] = []
    if program.style == "function" and program.entry is not None:
        stmts = list(program.entry.body)
        returning = [s for s in stmts if any(isinstance(n, ast.Return) for n in ast.walk(s))]
        relevant.extend(returning)
        wanted: set[str] = set()
        for s in returning:
            wanted |= _reads(s)
        wanted = _slice(stmts, wanted, relevant)
    else:
        stmts = _top_statements(program)
        calls = [s for s in stmts if _is_result_call(s)]
        if calls:
            start = stmts.index(calls[-1])
            relevant.append(calls[-1])
            wanted = _reads(calls[-1])
            wanted = _slice(stmts[:start], wanted, relevant)
        else:
            assigned = set().union(*(_writes(s) for s in stmts)) if stmts else set()
            name = next((n for n in RESULT_NAMES if n in assigned), None)
            if name is not None:
                wanted = _slice(stmts, {name}, relevant)
            elif stmts and isinstance(stmts[-1], ast.Expr):  # the last expression is the result
                relevant.append(stmts[-1])
                wanted = _slice(stmts[:-1], _reads(stmts[-1]), relevant)
            else:
                wanted = set()
    # a call of one of the program's own functions rests on every statement of that function
    for fname in sorted(wanted & set(program.functions)):
        if program.entry is None or fname != program.entry.name:
            relevant.append(program.functions[fname])
    return relevant


def cited_steps(run: Any) -> tuple[int, ...]:
    """Step ids (of ``run.trace.steps``) that produced ``run.value``; empty when no step did."""
    program, trace = run.program, run.trace
    steps = [s for s in trace.steps if s.error is None]
    if program.style == "vpeval":
        ids = {s.id for s in steps}
    else:
        spans = [(s.lineno, getattr(s, "end_lineno", None) or s.lineno) for s in relevant_statements(program)]
        ids = {s.id for s in steps if s.line is not None and any(a <= s.line <= b for a, b in spans)}
    own = getattr(run.value, "steps", None)
    if isinstance(own, tuple) and all(isinstance(i, int) for i in own):
        known = {s.id for s in trace.steps}
        ids |= {i for i in own if i in known}
    return tuple(sorted(ids))
