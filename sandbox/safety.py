"""What a program may do: allowed syntax, builtins, and the methods of plain data it may call.

Everything not listed here is rejected — by the checker before running, and again by the
interpreter if it ever meets it (defence in depth).
"""

from __future__ import annotations

import ast

# Syntax the interpreter implements.  Anything else is rejected with a reason from REJECTED or a
# generic message.
ALLOWED_NODES: tuple[type, ...] = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.If, ast.For, ast.While, ast.Break,
    ast.Continue, ast.Pass, ast.Return, ast.FunctionDef, ast.arguments, ast.arg,
    ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.IfExp, ast.Compare, ast.Call, ast.keyword,
    ast.Constant, ast.Name, ast.Attribute, ast.Subscript, ast.Slice, ast.Load, ast.Store,
    ast.List, ast.Tuple, ast.Dict, ast.Set, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
    ast.comprehension, ast.JoinedStr, ast.FormattedValue,
    ast.And, ast.Or, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
    ast.USub, ast.UAdd, ast.Not, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
    ast.Is, ast.IsNot,
)

ALLOWED_TYPES: frozenset[type] = frozenset(ALLOWED_NODES)  # exact node classes, for fast membership tests

REJECTED: dict[type, tuple[str, str]] = {
    ast.Import: ("import is not allowed", "tools and values are available by name; nothing needs importing"),
    ast.ImportFrom: ("import is not allowed", "tools and values are available by name; nothing needs importing"),
    ast.ClassDef: ("class definitions are not allowed", "use the value types (Image, Box, Detections, ...)"),
    ast.Lambda: ("lambda is not allowed", "write a top-level def, or a comprehension"),
    ast.With: ("'with' is not allowed", "tools manage their own resources"),
    ast.AsyncWith: ("'async with' is not allowed", "programs are synchronous; calls run concurrently by themselves"),
    ast.Try: ("try/except is not allowed", "a failing step stops the run and is reported in the trace"),
    ast.Raise: ("raise is not allowed", "return a value that says what went wrong"),
    ast.Global: ("'global' is not allowed", "pass values as arguments and return results"),
    ast.Nonlocal: ("'nonlocal' is not allowed", "pass values as arguments and return results"),
    ast.Delete: ("'del' is not allowed", "assign a new value instead"),
    ast.AsyncFunctionDef: ("async functions are not allowed", "write a plain def"),
    ast.Await: ("await is not allowed", "calls run concurrently by themselves"),
    ast.Yield: ("yield is not allowed", "return a list"),
    ast.YieldFrom: ("yield is not allowed", "return a list"),
    ast.NamedExpr: ("':=' is not allowed", "assign on its own line"),
    ast.Assert: ("assert is not allowed", "use if and return a value"),
    ast.Match: ("match is not allowed", "use if/elif/else"),
    ast.Starred: ("'*' unpacking is not allowed", "pass arguments one by one"),
    ast.MatMult: ("'@' is not allowed", ""),
    ast.LShift: ("bit shifts are not allowed", ""),
    ast.RShift: ("bit shifts are not allowed", ""),
    ast.BitOr: ("bitwise operators are not allowed", "use 'or'"),
    ast.BitAnd: ("bitwise operators are not allowed", "use 'and'"),
    ast.BitXor: ("bitwise operators are not allowed", "use '!='"),
    ast.Invert: ("'~' is not allowed", "use 'not'"),
}
if hasattr(ast, "TryStar"):
    REJECTED[ast.TryStar] = REJECTED[ast.Try]

# Names of builtins a program may call.  Implemented in the interpreter (bounded versions).
SAFE_BUILTINS: frozenset[str] = frozenset({
    "len", "min", "max", "sum", "abs", "round", "sorted", "reversed", "range", "enumerate", "zip",
    "int", "float", "str", "bool", "list", "dict", "tuple", "set", "any", "all", "print",
})

# Type names usable in annotations of program functions.
PLAIN_TYPES = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict,
               "tuple": tuple, "Any": object}

# Methods of plain data a program may call (attribute reads of plain data are not allowed).
SAFE_METHODS: dict[type, frozenset[str]] = {
    str: frozenset({
        "lower", "upper", "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "replace", "startswith",
        "endswith", "join", "find", "rfind", "count", "isdigit", "isnumeric", "isalpha", "isalnum", "isspace",
        "title", "capitalize", "casefold", "removeprefix", "removesuffix", "partition", "rpartition", "zfill",
        "index",
    }),
    list: frozenset({"append", "extend", "pop", "index", "count", "insert", "remove", "reverse", "copy", "sort"}),
    dict: frozenset({"get", "keys", "values", "items", "pop", "update", "copy", "setdefault"}),
    tuple: frozenset({"index", "count"}),
    set: frozenset({"add", "union", "intersection", "difference", "issubset", "issuperset", "copy", "discard"}),
    int: frozenset({"bit_length"}),
    float: frozenset({"is_integer"}),
}

# Methods that grow a container in place: the interpreter checks sizes after them.
GROWING_METHODS = frozenset({"append", "extend", "insert", "update", "setdefault", "add"})
# Methods that compare the container's elements with each other or with an argument.
COMPARING_METHODS = frozenset({"sort", "index", "count", "remove"})


def node_depth(tree: ast.AST, limit: int) -> int:
    """Maximum nesting depth of a tree, stopping early past ``limit`` (iterative: no recursion)."""
    best = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > best:
            best = depth
            if best > limit:
                return best
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return best
