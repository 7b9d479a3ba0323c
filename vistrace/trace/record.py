"""The trace data model: one record per step, and the run around them (saved as trace.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class StepError(BaseModel):
    type: str
    message: str
    line: int | None = None
    col: int | None = None
    hint: str | None = None


class StepRecord(BaseModel):
    """One tool call (or one failing operation) of a run."""

    id: int
    line: int | None = None
    col: int | None = None
    end_line: int | None = None
    source: str = ""            # the program text of the statement this step belongs to
    target: str | None = None   # the variable the result was assigned to, if any
    call: str = ""              # the name used in the program (may be an alias, e.g. LOC)
    tool: str | None = None     # the canonical tool name
    backend: str | None = None
    model: str | None = None
    version: str | None = None
    reason: str | None = None   # why this backend was chosen
    args: dict[str, str] = Field(default_factory=dict)      # summaries
    args_json: dict[str, Any] = Field(default_factory=dict)
    output: str | None = None                               # summary
    output_json: Any = None
    artifacts: list[str] = Field(default_factory=list)      # paths relative to the run folder
    started: float = 0.0        # seconds since the run started
    duration_s: float = 0.0
    cache_hit: bool = False
    error: StepError | None = None


class Trace(BaseModel):
    """A whole run: the program, its inputs, the steps, the result or the error."""

    vistrace_version: str = ""
    name: str = ""
    program: str = ""
    style: str = ""
    inputs: dict[str, Any] = Field(default_factory=dict)        # name -> JSON description
    input_summaries: dict[str, str] = Field(default_factory=dict)  # name -> one-line summary
    input_files: dict[str, str] = Field(default_factory=dict)   # name -> path inside the run folder
    steps: list[StepRecord] = Field(default_factory=list)
    result: Any = None
    result_summary: str | None = None
    error: StepError | None = None
    started_at: str = ""
    duration_s: float = 0.0
    limits: dict[str, Any] = Field(default_factory=dict)
    isolation: dict[str, Any] | None = None  # the worker's OS limits when the program ran isolated (docs/isolation.md)

    def comparable(self) -> dict[str, Any]:
        """The parts of a trace that must be identical when a run is replayed (no timings, no cache flags)."""
        steps = [s.model_dump(exclude={"started", "duration_s", "cache_hit", "artifacts"}) for s in self.steps]
        return {"program": self.program, "inputs": self.inputs, "steps": steps, "result": self.result,
                "error": None if self.error is None else self.error.model_dump()}

    # renderers (imported lazily: the model itself stays light) --------------------------------
    def _repr_html_(self) -> str:
        """Notebook display: the HTML report, text only (use ``render_html(trace, run_dir)`` for pictures)."""
        from .report import render_html

        return render_html(self)

    def __rich__(self):
        from .render import render_rich

        return render_rich(self)
