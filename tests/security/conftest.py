"""Shared pieces of the sandbox security tests: the real tool registry, a probe image, and ``attempt``,
which takes a program through parse -> check -> run (the real interpreter, the real tool dispatcher
and trace recorder) and says where it stopped and with what."""

from __future__ import annotations

import builtins
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

# Tools whose backends run in this process without models, network or helper processes; the attack
# corpus and the fuzzer only call these.
CHEAP_TOOLS = ("box", "detections", "crop", "zoom", "region", "count", "spatial", "scale", "count_eval")


@dataclass
class Attempt:
    """Where a program stopped: 'check' (parse or static check), 'run' (a vistrace error while running),
    'ok' (it ran to the end) or 'internal' (a Python exception escaped: always a bug)."""

    stage: str
    error: BaseException | None = None
    problems: list = field(default_factory=list)
    value: Any = None
    printed: list = field(default_factory=list)
    trace_json: str = ""

    def texts(self) -> list[str]:
        """Every text the attempt produced, for canary searches."""
        out = [str(self.error or ""), *(str(p) for p in self.problems), *self.printed, self.trace_json]
        if self.stage == "ok":
            out.append(_bounded_repr(self.value))
        return out


def _bounded_repr(value: Any, limit: int = 20_000) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # noqa: BLE001 - a value whose repr fails is reported, not raised
        return f"<repr failed: {type(exc).__name__}>"
    return text[:limit]


def make_probe_image():
    from PIL import Image as PILImage

    from vistrace.values import Image

    return Image(PILImage.new("RGB", (64, 48), (200, 30, 30)), source="security-probe")


def host_inputs(image) -> dict[str, Any]:
    """Inputs a host could hand a program: the probe image, and (named by an attack's ``# inputs:``
    line) real Python modules, to show a program cannot use them even when given them."""
    return {"image": image, "IMAGE": image, "img": image, "os": os, "sys": sys, "builtins": builtins}


def attempt(source: str, registry, limits, inputs: dict[str, Any], *, record_trace: bool = True,
            parallel: int = 1) -> Attempt:
    """Parse, check and (when clean) run ``source``; never raises for anything the program does."""
    from vistrace.api import Dispatcher
    from vistrace.errors import ProgramError, VistraceError
    from vistrace.sandbox import Interpreter, check, errors, parse
    from vistrace.trace import Recorder

    try:
        prog = parse(source, limits=limits)
    except ProgramError as exc:
        return Attempt("check", exc, list(exc.problems))
    except Exception as exc:  # noqa: BLE001 - reported as an internal failure
        return Attempt("internal", exc)
    try:
        problems = errors(check(prog, registry, limits))
    except Exception as exc:  # noqa: BLE001
        return Attempt("internal", exc)
    if problems:
        return Attempt("check", None, problems)
    wanted = {i.name for i in prog.inputs}
    given = {k: v for k, v in inputs.items() if k in wanted}
    recorder = Recorder(program=prog.source, name=prog.name, style=prog.style, version="security-test")
    try:
        out = Interpreter(prog, registry, Dispatcher(registry, recorder, None), limits, parallel).run(given)
    except VistraceError as exc:
        recorder.set_error(exc)
        return Attempt("run", exc, trace_json=_trace_json(recorder) if record_trace else "")
    except BaseException as exc:  # noqa: BLE001 - RecursionError, MemoryError, KeyError...: all bugs
        return Attempt("internal", exc)
    recorder.set_result(out.value)
    return Attempt("ok", None, value=out.value, printed=list(out.printed),
                   trace_json=_trace_json(recorder) if record_trace else "")


def _trace_json(recorder) -> str:
    return recorder.close().model_dump_json()


@pytest.fixture(scope="session")
def security_registry():
    from vistrace.tools import default_registry

    return default_registry()


@pytest.fixture(scope="session")
def probe_image():
    return make_probe_image()
