"""Given programs outside the language, when checked, then each is rejected before running with line:col."""

from __future__ import annotations

import pytest

from vistrace.sandbox import check, errors, parse

REJECTED = [
    ("import os", "import is not allowed"),
    ("from os import path", "import is not allowed"),
    ("class A:\n    pass", "class definitions are not allowed"),
    ("f = lambda x: x", "lambda is not allowed"),
    ("with open('x') as f:\n    pass", "'with' is not allowed"),
    ("try:\n    x = 1\nexcept Exception:\n    x = 2", "try/except is not allowed"),
    ("def f(image: Image) -> int:\n    global y\n    return 1", "'global' is not allowed"),
    ("def f(x: int) -> int:\n    def g(y: int) -> int:\n        return y\n    return 1",
     "functions can only be defined at the top level"),
    ("x = (1).__class__", "attributes starting with '_' are not allowed"),
    ("_secret = 1", "names starting with '_' are not allowed"),
    ("y = __import__('os')", "names starting with '_' are not allowed"),
    ("x = open('/etc/passwd')", "unknown tool 'open'"),
    ("x = eval('1+1')", "unknown tool 'eval'"),
    ("x = exec('1')", "unknown tool 'exec'"),
    ("x = getattr(1, 'real')", "unknown tool 'getattr'"),
    ("x = add(1, 2)\ny = x()", "'x' is a variable, not a tool"),
    ("x = [add][0](1, 2)", "'add' is a tool or builtin and can only be called"),
    ("x = add(*[1, 2])", "'*' unpacking is not allowed"),
    ("x = add(**{'a': 1, 'b': 2})", "'**' unpacking is not allowed"),
    ("del x", "'del' is not allowed"),
    ("raise ValueError('x')", "raise is not allowed"),
    ("assert 1", "assert is not allowed"),
    ("x = (y := 3)", "':=' is not allowed"),
    ("x = 'a'.format(1)", "method 'format' of str is not available"),
    ("x = 1 << 80", "bit shifts are not allowed"),
    ("x = ~1", "'~' is not allowed"),
    ("x = b'bytes'", "bytes literals are not supported"),
    ("return 3", "'return' outside a function"),
    ("for i in range(3):\n    pass\nelse:\n    pass", "'for ... else' is not supported"),
    ("x = add(1, 2, 3)", "add takes at most 2 positional arguments, got 3"),
    ("x = add(a=1)", "add is missing required argument 'b'"),
    ("x = add(1, c=2)", "add has no argument 'c'"),
    ("x = shout(3)", "argument 'text' of shout expects str, got int"),
    ("x = shout('a', times='3')", "argument 'times' of shout expects int, got str"),
    ("x = ad(1, 2)", "unknown tool 'ad'"),
    ("def f(x: Widget) -> int:\n    return 1", "unknown type 'Widget' in annotation"),
    ("def f(x: int) -> int:\n    return y", "name 'y' is not defined"),
    ("match 1:\n    case 1:\n        pass", "match is not allowed"),
    ("async def f():\n    pass", "async functions are not allowed"),
    ("@dec\ndef f(x: int) -> int:\n    return x", "decorators are not allowed"),
    ("def f(*args) -> int:\n    return 1", "*args and **kwargs are not allowed"),
    ("x = EVAL(expr='__import__(\"os\")')", "names starting with '_' are not allowed"),
    ("x = EVAL(expr=some_var)", "EVAL's expression must be a string literal"),
    ("x = [1, 2]\nx.y = 3", "attributes cannot be assigned"),
]


@pytest.mark.parametrize("source, message", REJECTED, ids=[m for _, m in REJECTED])
def test_rejected_before_running(registry, source, message):
    # given a program using a construct outside the language
    # when it is parsed and checked
    prog = parse(source)
    problems = errors(check(prog, registry))
    # then at least one error names the construct, with a position inside the program
    assert problems, f"expected a problem for {source!r}"
    assert any(message in p.message for p in problems), [str(p) for p in problems]
    lines = source.count("\n") + 1
    assert all(1 <= p.line <= lines and p.col >= 0 for p in problems)


def test_all_problems_reported_at_once(registry):
    # given a program with three independent mistakes
    source = "import os\nx = ad(1, 2)\ny = shout(3)\n"
    # when checked
    problems = errors(check(parse(source), registry))
    # then all three are reported, in source order
    assert [p.line for p in problems] == [1, 2, 3]


def test_unknown_tool_suggests_the_close_name(registry):
    problems = errors(check(parse("x = shuot('a')"), registry))
    assert problems[0].hint == "did you mean 'shout'?"
    assert problems[0].text == "shuot"
    assert (problems[0].line, problems[0].col) == (1, 4)


def test_shadowing_a_tool_is_a_warning_not_an_error(registry):
    problems = check(parse("add = 3\nx = add + 1"), registry)
    assert [p.severity for p in problems] == ["warning"]


def test_accepts_the_allowed_language(registry):
    source = '''
def main(n: int, word: str = "hi") -> dict:
    """Exercise the allowed constructs."""
    total = 0
    for i in range(n):
        if i % 2 == 0:
            total += add(i, 1)
        elif i == 3:
            continue
        else:
            total -= 1
    k = 0
    while k < 3:
        k += 1
        if k == 2:
            break
    squares = [x * x for x in range(4) if x > 0]
    lookup = {w: len(w) for w in ["a", "bb"]}
    a, b = 1, 2
    label = f"{word.upper()}-{total:>4}-{a + b}"
    return {"total": total, "squares": squares, "lookup": lookup, "label": label, "k": k,
            "flag": not (a > b) and b in [1, 2], "slice": squares[1:], "cond": 1 if total else 0}
'''
    assert check(parse(source), registry) == []
