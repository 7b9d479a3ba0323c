"""Checks made before Python runs an operation in C, where neither a limit nor the clock can stop it.

Sizes are computed before the result is (``'a' * 10**10``, ``2 ** 10**10``, ``x + x``); values about to
be compared or hashed are measured first (:meth:`Budget.measure`), because aliasing makes a small
program's value huge (``[[0] * 10**5] * 10**5``) and a deep tuple crashes CPython's recursive hash.
"""

from __future__ import annotations

import ast
import math

from vistrace.errors import LimitExceeded, Location, RuntimeProgramError

from .limits import _NESTED, _NESTED_SET

PRECHECKED = frozenset({ast.Mult, ast.Add, ast.Mod, ast.Pow})  # operators with a check before they run


def loc(node) -> Location:
    return Location(line=getattr(node, "lineno", None), col=getattr(node, "col_offset", None))


def precheck_binop(kind: type, left, right, lim, node) -> None:
    """Refuse an arithmetic operation whose result would exceed a limit, before computing it."""
    if kind is ast.Mult:
        _check_repeat(left, right, lim, node)
    elif kind is ast.Add:
        if isinstance(left, (str, list, tuple)) and type(left) is type(right):
            limit, name = (lim.max_string, "max_string") if isinstance(left, str) else (lim.max_collection,
                                                                                       "max_collection")
            if len(left) + len(right) > limit:
                raise LimitExceeded(name, limit, f"result of {len(left) + len(right)} elements exceeds the "
                                                 f"limit {name}", where=loc(node))
    elif kind is ast.Mod and isinstance(left, str):
        raise RuntimeProgramError("'%' string formatting is not allowed", hint="use an f-string", where=loc(node))
    elif kind is ast.Pow and isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0:
        bits = right * math.log2(abs(left))
        if bits > lim.max_int_bits:
            raise LimitExceeded("max_int_bits", lim.max_int_bits,
                                f"{left} ** {right} would need about {bits:.0f} bits; the limit max_int_bits "
                                f"is {lim.max_int_bits}", where=loc(node))


def _check_repeat(left, right, lim, node) -> None:
    seq, n = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
    if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
        size = len(seq) * max(n, 0)
        limit, name = (lim.max_string, "max_string") if isinstance(seq, str) else (lim.max_collection, "max_collection")
        if size > limit:
            raise LimitExceeded(name, limit, f"repetition would make {size} elements; the limit {name} is {limit}",
                                where=loc(node))


def range_len(r: range) -> int:
    """``len(r)``, also for ranges longer than a machine integer (where len() fails)."""
    try:
        return len(r)
    except OverflowError:
        return max(0, (r.stop - r.start + r.step - (1 if r.step > 0 else -1)) // r.step)


def length(value, default: int) -> int:
    """How many items iterating ``value`` gives, without iterating it (``default`` when it cannot say)."""
    if type(value) is range:
        return range_len(value)
    return len(value) if hasattr(value, "__len__") else default


def slice_guard(lim, n: int, size: int, node) -> None:
    """``x[a:b] = value`` copies ``n`` items into a list of ``size`` before any later check could run."""
    if n + size > lim.max_collection:
        raise LimitExceeded("max_collection", lim.max_collection,
                            f"assigning {n} elements to a slice exceeds the limit max_collection", where=loc(node))


def hash_guard(budget, items: list, node) -> list:
    """Tuples about to be hashed are measured first: CPython hashes nested tuples recursively in C."""
    for x in items:
        if type(x) is tuple and not _NESTED_SET.isdisjoint(map(type, x)):
            budget.measure(x, node)
    return items


def compare_guard(budget, kind: type, a, b, node) -> None:
    """Refuse a comparison (``kind``: the ast operator class) Python would walk too far (aliased or deeply
    nested values, a huge range scanned for a non-integer)."""
    if kind is ast.Is or kind is ast.IsNot:
        return
    if kind is ast.In or kind is ast.NotIn:
        if type(b) is range:
            if type(a) not in (int, bool) and range_len(b) > budget.limits.max_collection:
                raise LimitExceeded("max_collection", budget.limits.max_collection,
                                    f"'in' would scan a range of {range_len(b)} numbers (limit max_collection)",
                                    where=loc(node))
        elif type(b) in (dict, set, frozenset):
            if type(a) is tuple:
                budget.measure(a, node)  # hashed
        elif type(a) in _NESTED and type(b) in (list, tuple):
            # each element is compared with ``a``, and a comparison stops at the end of ``a``
            if budget.measure(a, node) * len(b) > 10 * budget.limits.max_collection:
                budget.measure(b, node)
        return
    if type(a) in _NESTED and type(b) in _NESTED:
        try:
            budget.measure(a, node)
        except LimitExceeded:
            budget.measure(b, node)  # == and < stop at the end of the smaller side


def argument_guard(budget, value, node) -> int:
    """Arguments are hashed, compared, copied or iterated by the callee: measure them first."""
    if type(value) is range:
        n = range_len(value)
        if n > budget.limits.max_collection:
            raise LimitExceeded("max_collection", budget.limits.max_collection,
                                f"a range of {n} numbers as an argument exceeds the limit max_collection",
                                where=loc(node))
        return 1
    return budget.measure(value, node)
