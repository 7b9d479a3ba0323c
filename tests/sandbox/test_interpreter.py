"""Given checked programs, when run by our interpreter, then they compute what Python would — safely."""

from __future__ import annotations

import time

import pytest

from vistrace.errors import InputError, LimitExceeded, RuntimeProgramError, ToolError
from vistrace.sandbox import Interpreter, Limits, parse


def test_function_program_runs_with_named_inputs(execute):
    source = '''
def main(n: int, word: str = "hi") -> dict:
    total = 0
    for i in range(n):
        if i % 2 == 0:
            total += add(i, 1)
        elif i == 3:
            continue
        else:
            total -= 1
    squares = [x * x for x in range(4) if x > 0]
    lookup = {w: len(w) for w in ["a", "bb"]}
    a, b = 1, 2
    label = f"{word.upper()}-{total:>4}-{a + b}"
    return {"total": total, "squares": squares, "lookup": lookup, "label": label,
            "flag": not (a > b) and b in [1, 2], "slice": squares[1:], "sorted": sorted([3, 1, 2], reverse=True)}
'''
    out = execute(source, n=6)
    # i=0: +1, i=1: -1, i=2: +3, i=3: skipped, i=4: +5, i=5: -1
    assert out.value == {"total": 7, "squares": [1, 4, 9], "lookup": {"a": 1, "bb": 2},
                         "label": "HI-   7-3", "flag": True, "slice": [4, 9], "sorted": [3, 2, 1]}
    assert out.style == "function"


def test_program_functions_call_each_other(execute):
    source = '''
def fib(n: int) -> int:
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)

def main(n: int) -> int:
    return fib(n)
'''
    assert execute(source, n=10).value == 55


def test_script_result_is_last_expression_or_result_variable(execute):
    assert execute("x = add(1, 2)\nx * 10").value == 30
    assert execute("result = add(1, 2)\ny = 5").value == 3


def test_visprog_eval_and_result_run_in_our_interpreter(registry, caller):
    source = """N0=ADD(left=COUNT0,right=2)
ANSWER0=EVAL(expr="'yes' if {N0} > 3 else 'no'")
FLAG=EVAL(expr="{ANSWER0} xor False")
FINAL_RESULT=RESULT(var=FLAG)"""
    prog = parse(source)
    from vistrace.sandbox import check, errors

    assert not errors(check(prog, registry))
    assert [i.name for i in prog.inputs] == ["COUNT0"]
    out = Interpreter(prog, registry, caller).run({"COUNT0": 2})
    # 'yes' is read as True in EVAL (VisProg's rule), and xor is !=
    assert out.value is True
    out = Interpreter(prog, registry, caller).run({"COUNT0": 1})
    assert out.value is False


def test_eval_string_cannot_escape(registry, caller):
    source = 'X=EVAL(expr="{A}.__class__")'
    prog = parse(source)
    from vistrace.sandbox import check, errors

    problems = errors(check(prog, registry))
    assert problems and "'_'" in problems[0].message and problems[0].line == 1


def test_runtime_error_carries_line_and_column(execute):
    with pytest.raises(RuntimeProgramError) as info:
        execute("x = 1\ny = [1, 2]\nz = y[5]")
    assert (info.value.where.line, info.value.where.col) == (3, 4)
    assert "IndexError" in info.value.message


def test_tool_error_carries_step_and_tool(execute):
    with pytest.raises(ToolError) as info:
        execute("a = add(1, 2)\nb = boom('bad input')")
    err = info.value
    assert (err.where.line, err.where.step, err.where.tool) == (2, 2, "boom")
    assert "bad input" in err.message


def test_missing_and_mistyped_inputs_are_input_errors(execute):
    source = "def main(n: int) -> int:\n    return n"
    with pytest.raises(InputError, match="missing input 'n'"):
        execute(source)
    with pytest.raises(InputError, match="input 'n' of main expects int, got str"):
        execute(source, n="3")
    with pytest.raises(InputError, match="needs input 'COUNT'"):
        execute("x = add(COUNT, 1)")


@pytest.mark.parametrize("source, limits, limit_name", [
    ("x = 0\nwhile True:\n    x += 1", Limits(max_loop_iterations=1000), "max_loop_iterations"),
    ("x = 0\nwhile True:\n    x = x", Limits(max_steps=500, max_loop_iterations=10**9), "max_steps"),
    ("s = 'a' * 10\nwhile True:\n    s = s + s", Limits(max_string=10_000), "max_string"),
    ("s = 'ab' * 2_000_000", Limits(), "max_string"),
    ("x = [0] * 10**9", Limits(), "max_collection"),
    ("x = list(range(10**9))", Limits(), "max_collection"),
    ("x = [i for i in range(10**9)]", Limits(max_loop_iterations=10**12), "max_collection"),
    ("x = 10 ** 100000", Limits(), "max_int_bits"),
    ("x = f'{1:>999999999}'", Limits(), "max_string"),
    ("x = ('a' * 1000).replace('a', 'b' * 10000)", Limits(), "max_string"),
    ("def f(n: int) -> int:\n    return f(n + 1)\n\ndef main() -> int:\n    return f(0)", Limits(), "max_call_depth"),
    ("x = 0\nfor i in range(100):\n    x = add(x, 1)", Limits(max_tool_calls=10), "max_tool_calls"),
    ("x = 0\nwhile True:\n    x = x", Limits(max_seconds=0.2, max_steps=10**9, max_loop_iterations=10**12), "max_seconds"),
])
def test_limits_stop_runaway_programs(execute, source, limits, limit_name):
    with pytest.raises(LimitExceeded) as info:
        execute(source, limits=limits)
    assert info.value.limit == limit_name
    assert limit_name in str(info.value)
    assert info.value.where.line is not None


def test_independent_calls_overlap_when_parallel(execute, caller):
    source = "a = slow_double(1)\nb = slow_double(2)\nc = slow_double(3)\nd = add(a, b)\nresult = add(d, c)"
    t0 = time.perf_counter()
    out = execute(source, parallel=4)
    elapsed = time.perf_counter() - t0
    assert out.value == 12
    # steps are reserved in program order whatever order they finish in
    assert [name for name, _ in caller.sites] == ["slow_double"] * 3 + ["add", "add"]
    # the three sleeps overlapped (sequential would take 0.6 s)
    assert elapsed < 0.55
    assert caller.started[4] >= max(caller.finished[1], caller.finished[2])


def test_sequential_run_gives_the_same_value(execute):
    source = "a = slow_double(1, 0.0)\nb = slow_double(2, 0.0)\nresult = add(a, b)"
    assert execute(source).value == execute(source, parallel=3).value == 6


def test_interpreter_refuses_on_its_own_what_the_checker_rejects(registry, caller):
    # given programs the checker would reject, run WITHOUT checking (defence in depth)
    cases = {
        "def main(word: str) -> str:\n    return word.format(1)": "method 'format' of str is not available",
        "def main(word: str) -> str:\n    return word.__class__": "attributes starting with '_' are not allowed",
        "def main(word: str) -> str:\n    return open(word)": "unknown tool 'open'",
        "def main(word: str) -> str:\n    import os\n    return word": "import is not allowed",
    }
    for source, message in cases.items():
        with pytest.raises(RuntimeProgramError, match=message):
            Interpreter(parse(source), registry, caller).run({"word": "x"})


def test_vpeval_program_scores_modules_and_keeps_failures(registry, caller):
    # a VPEval-style program where one module fails: it counts as failed, is reported, and the rest still run
    registry.alias("objectEval", "shout")
    registry.alias("countEval", "boom")
    prog = parse("objectEval('dog');countEval('no detector');objectEval('cat')")
    assert prog.style == "vpeval"
    out = Interpreter(prog, registry, caller).run({})
    assert out.value["total"] == 3 and out.value["passed"] == 2
    assert out.value["score"] == pytest.approx(2 / 3)
    failed = [m for m in out.modules if not m.passed]
    assert len(failed) == 1 and "no detector" in failed[0].error and failed[0].module == "countEval"
