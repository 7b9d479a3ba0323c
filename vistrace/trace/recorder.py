"""Collects step records while a program runs (thread-safe: calls may run concurrently)."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ..errors import VistraceError
from ..values import summarize, to_jsonable
from .record import StepError, StepRecord, Trace


def step_error(exc: BaseException) -> StepError:
    if isinstance(exc, VistraceError):
        return StepError(type=type(exc).__name__, message=exc.message, line=exc.where.line, col=exc.where.col,
                         hint=exc.hint)
    return StepError(type=type(exc).__name__, message=str(exc) or type(exc).__name__)


class Recorder:
    """Builds a :class:`Trace`; keeps the live values of each step for drawing artifacts later."""

    def __init__(self, program: str = "", name: str = "", style: str = "", version: str = "",
                 on_step: Callable[[StepRecord], None] | None = None):
        """``on_step``: called with each step's record as soon as it finishes or fails (live progress)."""
        self.on_step = on_step
        self.trace = Trace(program=program, name=name, style=style, vistrace_version=version,
                           started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.values: dict[int, Any] = {}      # step id -> output value
        self.arg_values: dict[int, dict[str, Any]] = {}
        self.input_values: dict[str, Any] = {}
        self.result_value: Any = None
        self._t0 = time.perf_counter()
        self._lock = threading.Lock()

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def set_inputs(self, inputs: dict[str, Any]) -> None:
        self.input_values = dict(inputs)
        self.trace.inputs = {k: to_jsonable(v) for k, v in inputs.items()}
        self.trace.input_summaries = {k: summarize(v) for k, v in inputs.items()}

    def begin(self, *, call: str, tool: str | None, args: dict[str, Any], line: int | None = None,
              col: int | None = None, end_line: int | None = None, source: str = "",
              target: str | None = None) -> int:
        with self._lock:
            sid = len(self.trace.steps) + 1
            self.trace.steps.append(StepRecord(
                id=sid, line=line, col=col, end_line=end_line, source=source, target=target, call=call,
                tool=tool, args={k: summarize(v) for k, v in args.items()},
                args_json={k: to_jsonable(v) for k, v in args.items()}, started=self.elapsed()))
            self.arg_values[sid] = dict(args)
            return sid

    def set_args(self, sid: int, args: dict[str, Any]) -> None:
        """Fill in a reserved step's arguments once they are ready."""
        with self._lock:
            rec = self._step(sid)
            rec.args = {k: summarize(v) for k, v in args.items()}
            rec.args_json = {k: to_jsonable(v) for k, v in args.items()}
            rec.started = self.elapsed()
            self.arg_values[sid] = dict(args)

    def _step(self, sid: int) -> StepRecord:
        return self.trace.steps[sid - 1]

    def finish(self, sid: int, value: Any, info: dict[str, str] | None = None, cache_hit: bool = False) -> None:
        info = info or {}
        with self._lock:
            rec = self._step(sid)
            rec.output = summarize(value)
            rec.output_json = to_jsonable(value)
            rec.backend = info.get("backend") or None
            rec.model = info.get("model") or None
            rec.version = info.get("version") or None
            rec.reason = info.get("reason") or None
            rec.cache_hit = cache_hit
            rec.duration_s = self.elapsed() - rec.started
            self.values[sid] = value
        self._notify(rec)

    def fail(self, sid: int, exc: BaseException, info: dict[str, str] | None = None) -> None:
        with self._lock:
            rec = self._step(sid)
            rec.error = step_error(exc)
            if info:
                rec.backend = info.get("backend") or rec.backend
            rec.duration_s = self.elapsed() - rec.started
        self._notify(rec)

    def _notify(self, rec: StepRecord) -> None:
        if self.on_step is None:
            return
        try:
            self.on_step(rec)
        except Exception as exc:  # noqa: BLE001 - an observer's failure must not change the run
            warnings.warn(f"the on_step callback failed on step {rec.id}: {type(exc).__name__}: {exc}",
                          RuntimeWarning, stacklevel=2)

    def set_result(self, value: Any) -> None:
        self.result_value = value
        self.trace.result = to_jsonable(value)
        self.trace.result_summary = summarize(value)

    def set_error(self, exc: BaseException) -> None:
        self.trace.error = step_error(exc)

    def close(self) -> Trace:
        self.trace.duration_s = self.elapsed()
        return self.trace
