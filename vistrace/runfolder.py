"""Run folders: save a run (program, inputs, trace, report, artifacts) and replay it exactly."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

PROGRAM_FILE = "program.vp"
INPUTS_FILE = "inputs/values.zip"


def save_run_folder(run, directory: str | Path | None = None) -> Path:
    """Write program.vp, the exact inputs (for replay), the input images, artifacts, trace.json, report.html."""
    from .api import default_run_dir
    from .trace.report import save_run
    from .values.codec import dumps

    run_dir = Path(directory) if directory is not None else default_run_dir(run.program.name)
    (run_dir / "inputs").mkdir(parents=True, exist_ok=True)
    (run_dir / PROGRAM_FILE).write_text(run.program.source, encoding="utf-8")
    try:
        (run_dir / INPUTS_FILE).write_bytes(dumps(run.inputs))
    except TypeError:
        pass  # inputs that cannot be encoded exactly are described in trace.json only (no replay)
    save_run(run.recorder, run_dir)
    return run_dir


@dataclass
class ReplayResult:
    run: Any
    identical: bool
    differences: list[str]


def _diff(a: Any, b: Any, path: str = "", out: list[str] | None = None, limit: int = 20) -> list[str]:
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            _diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k), out, limit)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        out.append(f"{path}: {json.dumps(a, default=str)[:120]} != {json.dumps(b, default=str)[:120]}")
    return out


def replay(run_dir: str | Path, *, out: str | Path | None = None, registry=None, cache: Any = True) -> ReplayResult:
    """Re-run a saved run from its program and inputs; compare the new trace with the saved one."""
    from .api import run as run_program
    from .trace import Trace
    from .values.codec import loads

    run_dir = Path(run_dir)
    for needed in (PROGRAM_FILE, "trace.json", INPUTS_FILE):
        if not (run_dir / needed).exists():
            raise InputError(f"{run_dir} is not a replayable run folder: {needed} is missing",
                             hint="give a folder written by `vistrace run` (default runs/<timestamp>-<name>/)")
    saved = Trace.model_validate_json((run_dir / "trace.json").read_text(encoding="utf-8"))
    inputs = loads((run_dir / INPUTS_FILE).read_bytes())
    source = (run_dir / PROGRAM_FILE).read_text(encoding="utf-8")
    from .sandbox import Limits

    limits = Limits(**saved.limits) if saved.limits else None
    new = run_program(source, registry=registry, cache=cache, name=saved.name, limits=limits, **inputs)
    if out is not None:
        new.save(out)
    def normal(t):  # the saved side went through JSON: compare both in that form
        return json.loads(json.dumps(t.comparable(), default=str))

    differences = _diff(normal(saved), normal(new.trace))
    return ReplayResult(new, not differences, differences)
