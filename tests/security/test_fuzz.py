"""Given programs generated from the language's grammar (assignments, arithmetic, comparisons,
if/for/while, comprehensions, builtins, a few cheap tools, string methods, f-strings, function defs)
and mutations of them (tokens deleted, inserted or duplicated, dunders inserted, random bytes), when
each is parsed, checked and — if clean — run with small limits, then every failure is a vistrace
error (never TypeError/RecursionError/MemoryError/KeyError/...) and no run outlives its time limit.

The default suite runs a few hundred fixed examples; ``-m long`` runs 10,000 random ones:
    .venv/bin/python -m pytest -q tests/security/test_fuzz.py              # default (derandomized)
    .venv/bin/python -m pytest -q -m long tests/security/test_fuzz.py      # 10,000 examples
"""

from __future__ import annotations

import re
import resource
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vistrace.errors import VistraceError
from vistrace.sandbox import Limits

from .conftest import attempt, make_probe_image

LIMITS = Limits(max_seconds=2, max_steps=3_000, max_loop_iterations=3_000, max_tool_calls=30, max_collection=2_000,
                max_string=20_000, max_int_bits=1_024, max_call_depth=12, max_memory=8_000_000)
SLACK_S = 8.0  # the watchdog's allowance over max_seconds (thread start, trace serialisation, a slow CI box)
# Hypothesis's own bookkeeping grows the process over thousands of examples, so memory is bounded per run:
# one run may not push the process's peak RSS up by more than this.
MAX_RSS_JUMP_MB = 200

# ------------------------------------------------------------------------------------- grammar
NAMES = ["x", "y", "s", "lst", "d", "b", "dets", "t", "n"]
PRELUDE = ("x = 3\ny = 2.5\ns = 'abc def'\nlst = [1, 2, 3]\nd = {'a': 1, 'b': 2}\nt = (1, 'two', 3.0)\nn = None\n"
           "b = box(1, 2, 30, 40, label='cat')\ndets = detections([b, box(5, 5, 20, 20, label='dog')])\n")
BINOPS = ["+", "-", "*", "/", "//", "%", "**"]
CMPOPS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is", "is not"]
BUILTINS1 = ["len", "str", "int", "float", "bool", "list", "tuple", "set", "sorted", "reversed", "sum", "min", "max",
             "abs", "round", "any", "all", "range", "enumerate", "dict", "print"]
BUILTINS2 = ["min", "max", "round", "range", "zip", "print", "enumerate"]
STR_METHODS = ["upper", "lower", "strip", "split", "replace", "startswith", "endswith", "join", "find", "count",
               "title", "zfill", "partition", "isdigit", "splitlines", "removeprefix", "index"]
LIST_METHODS = ["append", "extend", "pop", "index", "count", "insert", "remove", "reverse", "copy", "sort"]
DICT_METHODS = ["get", "keys", "values", "items", "pop", "update", "copy", "setdefault"]
VALUE_ATTRS = ["width", "height", "area", "label", "score", "cx", "cy", "xyxy", "center", "size", "count", "boxes",
               "labels", "query", "source", "sha256"]
VALUE_METHODS = ["iou", "expand", "clip", "contains", "summary", "above", "below", "largest", "smallest", "first",
                 "label", "sorted_by", "left_of", "nms", "region", "to_root"]
TOOL_CALLS = ["box({0}, {1}, {2}, {3})", "count({0})", "detections([{0}])", "region(image, {0})", "crop(image, {0})",
              "zoom(image, {0})", "spatial({0}, {1}, 'left')", "detections([box(0, 0, {0}, {1})])"]
TYPED_RECEIVERS = ([("s", m) for m in STR_METHODS] + [("lst", m) for m in LIST_METHODS]
                   + [("d", m) for m in DICT_METHODS] + [("b", m) for m in ("iou", "expand", "clip", "contains")]
                   + [("dets", m) for m in ("above", "below", "label", "left_of", "sorted_by", "nms", "first")])
TYPED_EXPRESSIONS = ["b.iou(b)", "b.expand(1.5)", "dets.above(0.3)", "dets.label('cat')", "dets.largest()",
                     "dets.sorted_by('area')", "dets.left_of(b)", "b.contains(b)", "dets.count", "b.xyxy",
                     "image.size", "image.region()", "dets.nms(0.5)", "s.split(' ')", "', '.join([s, s])",
                     "list(d.items())", "[k for k in d]", "{k: v for k, v in d.items()}", "sorted(lst)",
                     "[v * 2 for v in lst if v > 1]", "dets.boxes[0].area", "count(dets)", "f'{b.label:>6}'",
                     "crop(image, b).size", "zoom(image, dets).width", "region(image, 'TOP').count"]
# values that stress the limits: huge lazy ranges, shared (aliased) structure, deep nesting, big numbers
HOSTILE = ["range(10 ** 12)", "[[0] * 1000] * 1000", "[lst] * 1000", "[[lst] * 100] * 100", "(((((1,),),),),)",
           "'x' * 20000", "10 ** 300", "2 ** 1023", "d.keys()", "d.items()", "d.values()", "dets.boxes", "range(-5, 5)",
           "[d] * 50", "{(1, 2): 3}", "[[]] * 100", "'yes'", "'007'", "1e308", "-0.0"]
WORDS = st.text(alphabet="abcdefgh XYZ019_-.,:", max_size=10)

ints = st.one_of(st.integers(-1000, 1000), st.integers(-2**70, 2**70),
                 st.sampled_from(["10 ** 100", "2 ** 64", "10 ** 10", "-1", "0", "7"]))
floats = st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: f"({f!r})")
strings = WORDS.map(repr)
leaf = st.one_of(ints.map(str), floats, strings, st.sampled_from(NAMES), st.sampled_from(HOSTILE),
                 st.sampled_from(["True", "False", "None", "image", "[]", "{}", "()", "''"]))


def _call(name, args):
    return f"{name}({', '.join(args)})"


def _extend(inner):
    two = st.tuples(inner, inner)
    return st.one_of(
        st.tuples(inner, st.sampled_from(BINOPS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(CMPOPS), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not "]), inner).map(lambda t: f"({t[0]}{t[1]})"),
        st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(BUILTINS1), inner).map(lambda t: _call(t[0], [t[1]])),
        st.tuples(st.sampled_from(BUILTINS2), inner, inner).map(lambda t: _call(t[0], [t[1], t[2]])),
        st.tuples(inner, st.sampled_from(STR_METHODS + LIST_METHODS + DICT_METHODS),
                  st.lists(inner, max_size=2)).map(lambda t: f"({t[0]}).{t[1]}({', '.join(t[2])})"),
        st.tuples(inner, st.sampled_from(VALUE_ATTRS)).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(inner, st.sampled_from(VALUE_METHODS), st.lists(inner, max_size=1)).map(
            lambda t: f"({t[0]}).{t[1]}({', '.join(t[2])})"),
        two.map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(inner, st.one_of(st.none(), inner), st.one_of(st.none(), inner)).map(
            lambda t: f"{t[0]}[{t[1] or ''}:{t[2] or ''}]"),
        st.lists(inner, max_size=4).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(inner, max_size=3).map(lambda xs: f"({', '.join(xs)},)" if xs else "()"),
        st.lists(inner, min_size=1, max_size=3).map(lambda xs: f"{{{', '.join(xs)}}}"),
        st.lists(two, max_size=3).map(lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"),
        st.tuples(inner, inner, inner).map(lambda t: f"[{t[0]} for v in {t[1]} if {t[2]}]"),
        st.tuples(inner, inner).map(lambda t: f"{{v: {t[0]} for v in {t[1]}}}"),
        st.tuples(inner, inner).map(lambda t: f"{{{t[0]} for v in {t[1]}}}"),
        st.tuples(inner, inner).map(lambda t: f"[[w for w in {t[0]}] for v in {t[1]}]"),
        st.tuples(inner, st.sampled_from(["", "!r", "!s", "!a"]),
                  st.sampled_from(["", ":>8", ":.3f", ":,", ":^{x}", ":x", ":08.2e", ":{s}", ":<{y}"])).map(
            lambda t: 'f"<{' + t[0] + t[1] + t[2] + '}>"'),
        st.tuples(st.sampled_from(TOOL_CALLS), st.lists(inner, min_size=4, max_size=4)).map(
            lambda t: t[0].format(*t[1])),
        # the same methods on receivers of the right type, so that more calls get past the checks
        st.tuples(st.sampled_from(TYPED_RECEIVERS), st.lists(inner, max_size=2)).map(
            lambda t: f"{t[0][0]}.{t[0][1]}({', '.join(t[1])})"),
        st.sampled_from(TYPED_EXPRESSIONS),
    )


exprs = st.recursive(leaf, _extend, max_leaves=10)
targets = st.sampled_from(NAMES + ["v", "k"])


def _placeholders(expr: str) -> str:
    """VisProg writes the variables of an EVAL expression as {NAME}."""
    return re.sub(r"\b(x|y|s|n|lst)\b", r"{\1}", expr)


def _indent(block: str) -> str:
    return "\n".join("    " + line for line in block.splitlines())


def _statements(depth: int):
    simple = st.one_of(
        st.tuples(targets, exprs).map(lambda t: f"{t[0]} = {t[1]}"),
        st.tuples(targets, st.sampled_from(["+", "-", "*", "//"]), exprs).map(lambda t: f"{t[0]} {t[1]}= {t[2]}"),
        st.tuples(st.sampled_from(["lst", "d"]), exprs, exprs).map(lambda t: f"{t[0]}[{t[1]}] = {t[2]}"),
        st.tuples(targets, targets, exprs).map(lambda t: f"{t[0]}, {t[1]} = {t[2]}"),
        exprs.map(lambda e: f"print({e})"),
        exprs,
        # VisProg's special forms: EVAL parses its string at check time and runs it in the interpreter
        st.tuples(targets, exprs).map(lambda t: f"{t[0]} = EVAL(expr={_placeholders(t[1])!r})"),
        targets.map(lambda n: f"FINAL_RESULT = RESULT(var={n})"),
        st.sampled_from(["pass", "break", "continue"]),
    )
    if depth <= 0:
        return simple
    body = st.lists(_statements(depth - 1), min_size=1, max_size=3).map("\n".join)
    return st.one_of(
        simple, simple,
        st.tuples(exprs, body, st.one_of(st.none(), body)).map(
            lambda t: f"if {t[0]}:\n{_indent(t[1])}" + (f"\nelse:\n{_indent(t[2])}" if t[2] else "")),
        st.tuples(exprs, body).map(lambda t: f"for v in {t[0]}:\n{_indent(t[1])}"),
        st.tuples(st.integers(0, 50), exprs, body).map(
            lambda t: f"k = 0\nwhile k < {t[0]} and {t[1]}:\n    k += 1\n{_indent(t[2])}"),
    )


FUNC_LEAF = st.one_of(st.sampled_from(["p", "q", "p + 1", "q * 2", "[p, q]", "str(p)", "f(p - 1, q)"]), ints.map(str))
function_defs = st.tuples(
    st.lists(st.one_of(
        st.tuples(st.sampled_from(["p", "q", "r"]), FUNC_LEAF).map(lambda t: f"{t[0]} = {t[1]}"),
        FUNC_LEAF.map(lambda e: f"if p > 0:\n    return {e}"),
    ), max_size=3),
    FUNC_LEAF,
).map(lambda t: "def f(p: int, q: int = 2) -> Any:\n" + "".join(f"{_indent(s)}\n" for s in t[0])
      + f"    return {t[1]}\n")

script_programs = st.tuples(st.one_of(st.just(""), function_defs),
                            st.lists(_statements(2), min_size=1, max_size=6)).map(
    lambda t: t[0] + PRELUDE + "\n".join(t[1]) + "\n" + ("r = f(x)\n" if t[0] else ""))
# function style: the entry function's typed inputs are checked against what the host passes
function_programs = st.tuples(st.one_of(st.just(""), function_defs),
                              st.lists(_statements(2), min_size=1, max_size=5), exprs).map(
    lambda t: t[0] + "def main(image: Image, x: int = 3, s: str = 'abc') -> Any:\n"
    + _indent(PRELUDE.replace("x = 3\n", "").replace("s = 'abc def'\n", "") + "\n".join(t[1]))
    + f"\n    return {t[2]}\n")
valid_programs = st.one_of(script_programs, script_programs, function_programs)

# --------------------------------------------------------------------------------- mutations
TOKEN = re.compile(r"\w+|\s+|[^\w\s]")
INSERTS = ["(", ")", "[", "]", "{", "}", ":", ",", ".", "'", '"', "\n", "    ", "=", "+", "*", "**", "not", "lambda",
           "import", "def", "return", "yield", "global", "class", "async", "await", "f'", "\\", "#", "@", "\x00",
           "10**10**10", "'a'*10**9", "__class__", "__globals__", "_x", "ｅｖａｌ", "\u202e", "\u200b"]
DUNDERS = [".__class__", ".__globals__", ".__dict__", ".__mro__", ".__subclasses__()", ".__reduce__()",
           "__import__('os')", "__builtins__", ".gi_frame", ".f_back", "._pil", ".__self__"]


@st.composite
def mutated_programs(draw):
    tokens = TOKEN.findall(draw(valid_programs))
    for _ in range(draw(st.integers(1, 4))):
        if not tokens:
            break
        i = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "dunder", "swap"]))
        if op == "delete":
            del tokens[i]
        elif op == "insert":
            tokens.insert(i, draw(st.sampled_from(INSERTS)))
        elif op == "duplicate":
            tokens.insert(i, tokens[i] * draw(st.integers(2, 3)))
        elif op == "dunder":
            tokens.insert(i, draw(st.sampled_from(DUNDERS)))
        else:
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
    return "".join(tokens)


random_bytes = st.one_of(
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", errors="replace")),
    st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
    st.text(max_size=200),
)
any_program = st.one_of(valid_programs, valid_programs, mutated_programs(), mutated_programs(), random_bytes)

# ------------------------------------------------------------------------------------ property
_STATE: dict = {}


def _context():
    if not _STATE:
        from vistrace.tools import default_registry

        _STATE["registry"] = default_registry()
        _STATE["inputs"] = {"image": make_probe_image()}
    return _STATE["registry"], _STATE["inputs"]


def run_with_watchdog(source: str, parallel: int = 1):
    """Run the attempt on a thread and wait max_seconds + slack: a run still going then is a hang."""
    registry, inputs = _context()
    box: dict = {}

    def target():
        try:
            box["result"] = attempt(source, registry, LIMITS, inputs, parallel=parallel)
        except BaseException as exc:  # noqa: BLE001 - attempt() must never raise; report if it does
            box["raised"] = exc

    worker = threading.Thread(target=target, name="fuzz-run", daemon=True)
    worker.start()
    worker.join(LIMITS.max_seconds + SLACK_S)
    assert not worker.is_alive(), f"the run outlived max_seconds={LIMITS.max_seconds} + {SLACK_S}s:\n{source}"
    assert "raised" not in box, f"attempt() raised {box.get('raised')!r}"
    return box["result"]


def _peak_rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux: KiB


def check_outcome(source: str, parallel: int = 1) -> None:
    _context()
    peak = _peak_rss_mb()
    result = run_with_watchdog(source, parallel)
    jump = _peak_rss_mb() - peak
    assert jump < MAX_RSS_JUMP_MB, f"one run raised the peak RSS by {jump} MB:\n{source}"
    if result.stage == "internal":
        raise AssertionError(f"internal exception {type(result.error).__name__}: {result.error}\n"
                             f"--- program:\n{source}")
    if result.stage == "run":
        assert isinstance(result.error, VistraceError)
    if result.stage == "check":
        lines = max(1, source.count("\n") + 1)
        for p in result.problems:
            assert 1 <= p.line <= lines + 1 and p.col >= 0, (str(p), source)


COMMON = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))


@settings(max_examples=300, derandomize=True, **COMMON)
@given(source=any_program, parallel=st.sampled_from([1, 1, 1, 2]))
def test_fuzzed_programs_fail_only_with_vistrace_errors(source, parallel):
    check_outcome(source, parallel)


@settings(max_examples=100, derandomize=True, **COMMON)
@given(source=valid_programs)
def test_generated_programs_pass_the_checker_often(source):
    # the grammar is useful only if a fair share of its programs get past the checker and run
    result = run_with_watchdog(source)
    _STATE.setdefault("stages", []).append(result.stage)
    assert result.stage != "internal", (result.error, source)


def test_generated_programs_reach_the_interpreter():
    stages = _STATE.get("stages")
    if not stages:
        pytest.skip("run together with test_generated_programs_pass_the_checker_often")
    assert sum(s in ("run", "ok") for s in stages) >= len(stages) // 4, {s: stages.count(s) for s in set(stages)}


@pytest.mark.long
@settings(max_examples=10_000, **COMMON)
@given(source=any_program, parallel=st.sampled_from([1, 1, 1, 2]))
def test_fuzz_long(source, parallel):
    check_outcome(source, parallel)

