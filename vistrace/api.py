"""The Python API: ``vistrace.run(program, **inputs) -> Run`` and ``vistrace.check(program)``.

This is where the layers meet: the sandbox runs the program, the tool registry answers the calls
(through the result cache), and the recorder writes every step into the trace.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from . import __version__
from .errors import InputError, ProgramError, RuntimeProgramError, VistraceError
from .signature import Signature
from .trace import Recorder, Trace



class Dispatcher:
    """Answers the interpreter's tool calls: registry + cache, each call recorded as a trace step."""

    def __init__(self, registry, recorder: Recorder, cache=None):
        self.registry = registry
        self.recorder = recorder
        self.cache = cache

    def begin(self, sig: Signature, site) -> int:
        return self.recorder.begin(call=sig.name, tool=sig.tool, args={}, line=site.line, col=site.col,
                                   end_line=site.end_line, source=site.source, target=site.target)

    def call(self, step: int, sig: Signature, args: dict[str, Any]) -> Any:
        self.recorder.set_args(step, args)
        tool = self.registry.get(sig.tool)
        try:
            value, info = tool.invoke(args, self.registry, self.cache)
        except BaseException as exc:
            self.recorder.fail(step, exc)
            raise
        self.recorder.finish(step, value, info, cache_hit=bool(info.get("cache_hit")))
        return value


class Run:
    """The result of running a program: ``value``, ``trace``, ``error`` (None when it succeeded)."""

    def __init__(self, program, recorder: Recorder, value: Any = None, error: VistraceError | None = None,
                 outcome=None, inputs: dict[str, Any] | None = None):
        self.program = program
        self.recorder = recorder
        self.value = value
        self.error = error
        self.outcome = outcome
        self.inputs = dict(inputs or {})
        self.run_dir: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def trace(self) -> Trace:
        return self.recorder.trace

    @property
    def printed(self) -> list[str]:
        return list(self.outcome.printed) if self.outcome is not None else []

    def save(self, directory: str | Path | None = None) -> Path:
        """Write the run folder (trace.json, report.html, artifacts/, program.vp, inputs/); returns its path."""
        from .runfolder import save_run_folder

        self.run_dir = save_run_folder(self, directory)
        return self.run_dir

    def describe(self, limit: int = 2000) -> str:
        """The result for people: a VPEval program lists each module's verdict and why."""
        from .values import summarize

        if self.error is not None:
            return f"error: {self.error}"
        if self.outcome is not None and self.outcome.style == "vpeval":
            v = self.value
            lines = [f"VPEval score {v['score']:.2f} ({v['passed']}/{v['total']} modules passed)"]
            for m in self.outcome.modules:
                mark = "pass" if m.passed else "FAIL"
                lines.append(f"  {mark}  line {m.line}: {m.source} — {m.error or m.explanation}")
            return "\n".join(lines)
        return summarize(self.value, limit=limit)

    def observation(self, max_chars: int = 2000) -> str:
        from .trace.render import observation

        return observation(self.trace, max_chars=max_chars)

    def _repr_html_(self) -> str:
        from .trace.report import render_html

        return render_html(self.trace, self.run_dir)

    def __rich__(self):
        from .trace.render import render_rich

        return render_rich(self.trace)

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"error: {self.error}"
        return f"Run({self.program.name!r}, {len(self.trace.steps)} steps, {state})"


def default_run_dir(name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "program"
    base = Path("runs") / f"{stamp}-{safe}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


def _registry(registry):
    if registry is not None:
        return registry
    from vistrace.tools import default_registry

    return default_registry()


def parse_and_check(program, registry=None, limits=None, name: str | None = None):
    """Parse and check; raises ProgramError carrying every problem when the program is rejected."""
    from vistrace.sandbox import check as sandbox_check, errors, parse

    prog = parse(program, limits=limits, name=name)
    problems = sandbox_check(prog, _registry(registry), limits)
    bad = errors(problems)
    if bad:
        first = bad[0]
        raise ProgramError(f"{len(bad)} problem{'s' if len(bad) > 1 else ''} in the program; first: {first}",
                           problems)
    return prog, problems


def check(program, registry=None, limits=None) -> list:
    """Every problem of a program (a syntax error is returned as one problem, not raised)."""
    from vistrace.sandbox import check as sandbox_check, parse

    try:
        prog = parse(program, limits=limits)
    except ProgramError as exc:
        if exc.problems:
            return exc.problems
        raise
    return sandbox_check(prog, _registry(registry), limits)


def coerce_inputs(prog, inputs: dict[str, Any]) -> dict[str, Any]:
    """Turn image paths and PIL images into :class:`Image` values where an image is expected."""
    from .values import Image
    from .values.image import IMAGE_SUFFIXES

    declared = {i.name: i.annotation for i in prog.inputs}
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        ann = declared.get(name, "")
        wants_image = ann == "Image" or (not ann and (name.lower() in ("image", "left", "right") or
                                                      "image" in name.lower()))
        if isinstance(value, Path) or (isinstance(value, str) and wants_image and
                                       value.lower().endswith(tuple(IMAGE_SUFFIXES))):
            value = Image.open(value)
        elif type(value).__module__.startswith("PIL.") and hasattr(value, "convert"):
            value = Image(value, source=getattr(value, "filename", "") or "PIL image")
        out[name] = value
    return out


def run(program, /, *, registry=None, limits=None, parallel: int = 1, cache: Any = True,
        name: str | None = None, on_step: Callable[[Any], None] | None = None, isolate: Any = False,
        **inputs: Any) -> Run:
    """Parse, check and run ``program`` (text or path) on ``inputs``.

    Raises :class:`ProgramError` (with ``.problems``) when the program is rejected and
    :class:`InputError` for bad inputs; a failure while running is kept in ``Run.error`` with the
    trace so far.  ``cache=True`` uses the on-disk result cache, ``False`` none, or pass a ResultCache.
    ``on_step`` is called with each step's record (a ``StepRecord``) as soon as the step finishes or fails.
    ``isolate=True`` (or an :class:`~vistrace.sandbox.isolate.Isolation` with other limits) runs the
    program in a worker process with OS resource limits; the tools still run here (docs/isolation.md).
    """
    from vistrace.sandbox import Interpreter

    isolation = None
    if isolate is not False and isolate is not None:
        from vistrace.sandbox.isolate import Isolation

        isolation = Isolation.of(isolate)
    reg = _registry(registry)
    prog, _ = parse_and_check(program, reg, limits, name)
    values = coerce_inputs(prog, inputs)
    recorder = Recorder(program=prog.source, name=prog.name, style=prog.style, version=__version__,
                        on_step=on_step)
    recorder.set_inputs(values)
    if limits is not None:
        recorder.trace.limits = limits.to_json()
    if isolation is not None:
        recorder.trace.isolation = isolation.to_json()
    if cache is True:
        from .trace.cache import ResultCache

        cache = ResultCache()
    elif cache is False:
        cache = None
    dispatcher = Dispatcher(reg, recorder, cache)
    try:
        if isolation is None:
            outcome = Interpreter(prog, reg, dispatcher, limits, parallel).run(values)
        else:
            from vistrace.sandbox.isolate import run_isolated

            outcome = run_isolated(prog, reg, dispatcher, values, limits, parallel, isolation)
    except InputError:
        raise
    except VistraceError as exc:
        recorder.set_error(exc)
        recorder.close()
        return Run(prog, recorder, None, exc, None, values)
    except KeyboardInterrupt:
        err = RuntimeProgramError("interrupted by the user; the steps so far are kept in the trace")
        recorder.set_error(err)
        recorder.close()
        return Run(prog, recorder, None, err, None, values)
    except Exception as exc:  # noqa: BLE001 - keep the trace even when something unexpected breaks
        err = RuntimeProgramError(f"internal error: {type(exc).__name__}: {exc}")
        recorder.set_error(err)
        recorder.close()
        return Run(prog, recorder, None, err, None, values)
    recorder.set_result(outcome.value)
    recorder.close()
    result = Run(prog, recorder, outcome.value, None, outcome, values)
    if outcome.style == "vpeval":
        recorder.trace.result_summary = result.describe()
    return result
