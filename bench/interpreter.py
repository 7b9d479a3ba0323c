"""Per-step overhead of the vistrace interpreter vs plain Python vs smolagents' LocalPythonExecutor.

The same program text runs, side by side in one process, through:

* plain Python   -- ``compile()`` + ``exec()`` of the program with the raw tool functions (the baseline);
* vistrace       -- ``Interpreter(prog, reg, caller, limits).run(inputs)`` on an already parsed and
                    checked program; the caller calls the raw tool function (no validation, no trace);
* vistrace full  -- ``vistrace.run(source, cache=False, registry=reg, ...)``: parse + check + run +
                    pydantic argument validation + one trace record per step (end to end);
* smolagents     -- ``LocalPythonExecutor(...)(source)`` with the raw tool functions sent as tools,
                    its timeout thread disabled and its ``ast.parse`` answered from a cache, so that
                    only its evaluation is timed (``ast.parse`` is timed on its own, like our parse+check).

The tools are cheap real functions, so the time is dominated by interpreter overhead:

    overhead per step = (engine time - plain Python time) / tool calls

Usage:  .venv/bin/python bench/interpreter.py [--quick] [--repeat N] [--markdown] [--profile]
"""

from __future__ import annotations

import argparse
import ast
import cProfile
import gc
import io
import platform
import pstats
import sys
import time
import types
from dataclasses import dataclass
from typing import Any, Callable

TARGET = 3.0  # the target: smolagents overhead / vistrace overhead >= 3


# ------------------------------------------------------------------------------------- tools
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first
        b: second
    """
    return a + b


def LOC(image: str, object: str) -> tuple:
    """Locate an object: a fake, deterministic box (x0, y0, x1, y1).

    Args:
        image: the image name
        object: what to find
    """
    n = len(object)
    return (n, n + 1, 10 * n, 10 * n + 5)


def AREA(box: tuple) -> int:
    """Area of a box (x0, y0, x1, y1).

    Args:
        box: the box
    """
    return (box[2] - box[0]) * (box[3] - box[1])


def LABEL(text: str, value: int) -> str:
    """Label text with a number.

    Args:
        text: the label
        value: the number
    """
    return f"{text}={value}"


def RESULT(var):  # only for plain Python and smolagents: vistrace performs RESULT itself
    return var


FUNCS: dict[str, Callable] = {"add": add, "LOC": LOC, "AREA": AREA, "LABEL": LABEL}


def make_registry():
    from vistrace.tools import Registry, tool

    reg = Registry()
    for fn in FUNCS.values():
        reg.add(tool()(fn))
    return reg


class Caller:
    """The ToolCaller protocol at its cheapest: a step counter and a direct call of the function."""

    def __init__(self, reg):
        self.reg = reg
        self.steps = 0

    def begin(self, sig, site) -> int:
        self.steps += 1
        return self.steps

    def call(self, step, sig, args: dict):
        return self.reg.get(sig.tool).func(**args)


# ---------------------------------------------------------------------------------- programs
@dataclass
class Bench:
    name: str
    source: str
    inputs: dict[str, Any]
    steps: int          # tool calls executed
    expected: Any


def straight_line(n: int) -> Bench:
    lines = [f"x{i} = add(x{i - 1}, 1)" for i in range(1, n + 1)]
    lines.append(f"result = x{n}")
    return Bench(f"straight-line ({n} calls)", "\n".join(lines) + "\n", {"x0": 0}, n, n)


def loop(n: int) -> Bench:
    src = f"total = 0\nfor i in range({n}):\n    total = add(total, i)\nresult = total\n"
    return Bench(f"loop (range({n}))", src, {}, n, n * (n - 1) // 2)


def visprog(blocks: int) -> Bench:
    lines = []
    for k in range(blocks):
        lines += [f"BOX{k}=LOC(image=IMAGE,object='object{k}')",
                  f"AREA{k}=AREA(box=BOX{k})",
                  f"ANSWER{k}=LABEL(text='object{k}',value=AREA{k})"]
    lines.append(f"FINAL_RESULT=RESULT(var=ANSWER{blocks - 1})")
    last = f"object{blocks - 1}"
    expected = LABEL(last, AREA(LOC("photo", last)))
    return Bench(f"VisProg-like ({3 * blocks} calls)", "\n".join(lines) + "\n", {"IMAGE": "photo"}, 3 * blocks,
                 expected)


# ---------------------------------------------------------------------------------- engines
def run_plain(b: Bench, code) -> Any:
    ns = dict(FUNCS)
    ns["RESULT"] = RESULT
    ns.update(b.inputs)
    exec(code, ns)  # noqa: S102 - the baseline: the same program as plain Python, trusted text
    return ns.get("FINAL_RESULT", ns.get("result"))


def best_of(engines: dict[str, Callable[[], Any]], repeat: int, warmup: int = 2) -> dict[str, tuple[float, Any]]:
    """Best (minimum) wall time in seconds of each engine over ``repeat`` interleaved rounds.

    Rounds interleave the engines so that a slow spell of the machine hits all of them alike; the
    minimum is the least noisy estimate for deterministic CPU-bound code.
    """
    values: dict[str, Any] = {}
    for name, fn in engines.items():
        for _ in range(warmup):
            values[name] = fn()
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeat):
        for name, fn in engines.items():
            gc.collect()
            t0 = time.perf_counter()
            values[name] = fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (min(ts), values[name]) for name, ts in times.items()}


@dataclass
class Row:
    bench: Bench
    plain: float
    ours: float
    parse_check: float
    full: float
    smol: float          # executor call with its ast.parse served from a cache
    smol_parse: float    # ast.parse of the same text
    cold: float          # parse + check + compile + run of a fresh program

    def per_step(self, t: float) -> float:
        return t / self.bench.steps * 1e6

    @property
    def ours_over(self) -> float:
        return self.per_step(self.ours - self.plain)

    @property
    def full_over(self) -> float:
        return self.per_step(self.full - self.plain)

    @property
    def smol_over(self) -> float:
        return self.per_step(self.smol - self.plain)

    @property
    def ratio(self) -> float:
        return self.smol_over / self.ours_over if self.ours_over > 0 else float("inf")


def _cached_ast_module(trees: dict[str, ast.Module]) -> types.ModuleType:
    """A copy of the ``ast`` module whose ``parse`` serves pre-parsed trees (same attribute-lookup cost)."""
    mod = types.ModuleType("ast")
    mod.__dict__.update(ast.__dict__)
    real_parse = ast.parse

    def parse(source, *args, **kwargs):
        tree = trees.get(source) if not args and not kwargs else None
        return tree if tree is not None else real_parse(source, *args, **kwargs)

    mod.parse = parse
    return mod


def measure(b: Bench, repeat: int) -> Row:
    import smolagents.local_python_executor as lpe
    import vistrace
    from vistrace.sandbox import Interpreter, Limits, check, errors, parse

    reg = make_registry()
    limits = Limits(max_steps=10**9, max_tool_calls=10**9, max_loop_iterations=10**9)

    # plain Python: the same text compiled once, executed with the raw functions
    code = compile(b.source, f"<{b.name}>", "exec")

    # vistrace: parse + check (timed on its own), then the interpreter alone on the checked program
    def parse_check():
        prog = parse(b.source, limits=limits)
        problems = errors(check(prog, reg, limits))
        assert not problems, problems
        return prog

    prog = parse_check()

    def ours():  # the program's closures are compiled on its first run and reused (as for a replay)
        return Interpreter(prog, reg, Caller(reg), limits).run(dict(b.inputs)).value

    def cold():  # one-shot: parse + check + compile + run of a program never seen before
        return Interpreter(parse_check(), reg, Caller(reg), limits).run(dict(b.inputs)).value

    # vistrace full stack: parse + check + run + pydantic validation + one trace record per step
    def full():
        r = vistrace.run(b.source, cache=False, registry=reg, limits=limits, **b.inputs)
        if not r.ok:
            raise r.error
        assert len(r.trace.steps) == b.steps, (b.name, len(r.trace.steps))
        return r.value

    # smolagents: raw functions as tools, no timeout thread; its ast.parse answered from a cache so
    # that only its evaluation is timed (ast.parse is timed separately)
    ex = lpe.LocalPythonExecutor(additional_authorized_imports=[], timeout_seconds=None)
    ex.send_tools({**FUNCS, "RESULT": RESULT})
    cached_ast = _cached_ast_module({b.source: ast.parse(b.source)})

    def smol():
        ex.state = {"__name__": "__main__"}
        ex.send_variables(dict(b.inputs))
        saved, lpe.ast = lpe.ast, cached_ast
        try:
            return ex(b.source).output
        finally:
            lpe.ast = saved

    res = best_of({"plain": lambda: run_plain(b, code), "ours": ours, "full": full, "smol": smol, "cold": cold,
                   "parse_check": parse_check, "smol_parse": lambda: ast.parse(b.source)}, repeat)
    for name in ("plain", "ours", "full", "smol", "cold"):
        assert res[name][1] == b.expected, (b.name, name, res[name][1], b.expected)
    t = {name: v[0] for name, v in res.items()}
    return Row(b, t["plain"], t["ours"], t["parse_check"], t["full"], t["smol"], t["smol_parse"], t["cold"])


# ----------------------------------------------------------------------------------- output
HEADERS = ["program", "steps", "plain Python µs/step", "vistrace µs/step (overhead)",
           "vistrace full (with trace) µs/step", "smolagents µs/step (overhead)", "smolagents / vistrace"]


def table_rows(rows: list[Row]) -> list[list[str]]:
    out = []
    for r in rows:
        mark = "" if r.ratio >= TARGET else "  (< 3× target)"
        out.append([r.bench.name, str(r.bench.steps), f"{r.per_step(r.plain):.2f}", f"{r.ours_over:.2f}",
                    f"{r.full_over:.2f}", f"{r.smol_over:.2f}", f"{r.ratio:.2f}×{mark}"])
    return out


def parse_rows(rows: list[Row]) -> list[list[str]]:
    return [[r.bench.name, f"{r.parse_check * 1e3:.2f}", f"{r.per_step(r.parse_check):.2f}",
             f"{r.smol_parse * 1e3:.2f}",
             f"{r.per_step(r.cold - r.plain):.2f}",
             f"{r.per_step(r.smol_parse + r.smol - r.plain):.2f}"] for r in rows]


PARSE_HEADERS = ["program", "vistrace parse+check ms", "parse+check µs/step", "smolagents ast.parse ms",
                 "vistrace one-shot parse+check+compile+run overhead µs/step", "smolagents parse+run overhead µs/step"]


def markdown(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def show(title: str, headers: list[str], rows: list[list[str]], as_markdown: bool) -> None:
    if not as_markdown:
        try:
            from rich.console import Console
            from rich.table import Table

            t = Table(title=title)
            for i, h in enumerate(headers):
                t.add_column(h, justify="left" if i == 0 else "right")
            for r in rows:
                t.add_row(*r)
            console = Console()
            console.width = max(console.width, 180)
            console.print(t)
            return
        except ImportError:
            pass
    print(f"\n{title}\n")
    print(markdown(headers, rows))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        smol = version("smolagents")
    except Exception:  # noqa: BLE001
        smol = "?"
    import os

    return (f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()} ({platform.python_implementation()}), "
            f"smolagents {smol}")


def profile_straight_line(n: int, top: int = 20) -> str:
    """cProfile of the interpreter alone on the straight-line program; returns the stats text."""
    from vistrace.sandbox import Interpreter, Limits, check, parse

    reg = make_registry()
    limits = Limits(max_steps=10**9, max_tool_calls=10**9, max_loop_iterations=10**9)
    b = straight_line(n)
    prog = parse(b.source, limits=limits)
    check(prog, reg, limits)
    Interpreter(prog, reg, Caller(reg), limits).run(dict(b.inputs))  # warm up
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(5):
        Interpreter(prog, reg, Caller(reg), limits).run(dict(b.inputs))
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).strip_dirs()
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller programs and fewer repeats (smoke run)")
    ap.add_argument("--repeat", type=int, default=None, help="timed rounds (best of; default 9, quick 3)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables instead of rich tables")
    ap.add_argument("--profile", action="store_true", help="always print the cProfile of the straight-line run")
    args = ap.parse_args(argv)

    n_straight, n_loop, n_blocks = (50, 200, 17) if args.quick else (200, 2000, 67)
    repeat = args.repeat or (3 if args.quick else 9)
    benches = [straight_line(n_straight), loop(n_loop), visprog(n_blocks)]

    print(f"machine: {machine()}")
    print(f"best of {repeat} interleaved timed rounds after 2 warm-up runs; "
          "overhead = (engine - plain Python) / tool calls")
    rows = [measure(b, repeat) for b in benches]

    show("Interpreter overhead per step (µs; lower is better)", HEADERS, table_rows(rows), args.markdown)
    show("Parsing and checking (vistrace) vs ast.parse (smolagents)", PARSE_HEADERS, parse_rows(rows),
         args.markdown)

    worst = min(r.ratio for r in rows)
    missed = [r for r in rows if r.ratio < TARGET]
    print(f"\ntarget: smolagents overhead / vistrace overhead >= {TARGET:g}× on every program; "
          f"worst ratio {worst:.2f}× -> {'MET' if not missed else 'MISSED'}")
    for r in missed:
        print(f"  missed on {r.bench.name}: {r.ratio:.2f}× (vistrace {r.ours_over:.2f} µs/step, "
              f"smolagents {r.smol_over:.2f} µs/step)")
    if missed or args.profile:
        print(f"\ncProfile of the vistrace interpreter on the straight-line program ({n_straight} calls, 5 runs):\n")
        print(profile_straight_line(n_straight))
    return 0


if __name__ == "__main__":
    sys.exit(main())
