"""What an agent turn gives back: every attempt, and either an answer or a clear failure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vistrace.errors import Location, VistraceError


@dataclass(frozen=True)
class Attempt:
    """One plan and what became of it.

    ``stage`` says how far it got: ``"llm"`` (the model could not be called), ``"extract"`` (the output
    held no program), ``"check"`` (rejected before running), ``"run"`` (failed while running) or
    ``"answered"``.  ``problems`` are the texts the next attempt was given (with line:col, step, tool);
    ``error`` is the runtime (or LLM) error's JSON form.
    """

    number: int
    raw_output: str
    program: str | None
    stage: str
    problems: tuple[str, ...] = ()
    error: dict[str, Any] | None = None
    mode: str = "plain"
    finish_reason: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.stage == "answered"

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> "Attempt":
        return cls(number=int(d["number"]), raw_output=d.get("raw_output", ""), program=d.get("program"),
                   stage=d.get("stage", "plan"), problems=tuple(d.get("problems") or ()), error=d.get("error"),
                   mode=d.get("mode", "plain"), finish_reason=d.get("finish_reason", ""),
                   seconds=float(d.get("seconds") or 0.0))

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "stage": self.stage, "program": self.program, "problems": list(self.problems),
                "error": self.error, "mode": self.mode, "finish_reason": self.finish_reason,
                "seconds": round(self.seconds, 3), "raw_output": self.raw_output}


@dataclass
class AgentAnswer:
    """An answered question: the value, the program that computed it, its trace, and the steps the
    value rests on (``cited_steps``, step ids of ``trace.steps``)."""

    question: str
    value: Any
    program: str
    run: Any                      # vistrace.api.Run
    attempts: list[Attempt] = field(default_factory=list)
    cited_steps: tuple[int, ...] = ()
    run_dir: Path | None = None

    @property
    def trace(self):
        return self.run.trace

    @property
    def text(self) -> str:
        """The answer for people (``Run.describe()``)."""
        return self.run.describe()

    @property
    def citations(self) -> list[str]:
        """One line per cited step: ``step 2 (line 2, count): 1``."""
        by_id = {s.id: s for s in self.trace.steps}
        out = []
        for sid in self.cited_steps:
            s = by_id.get(sid)
            if s is not None:
                out.append(f"step {s.id} (line {s.line}, {s.tool or s.call}): {s.output}")
        return out

    def to_json(self) -> dict[str, Any]:
        from vistrace.values import to_jsonable

        return {"question": self.question, "value": to_jsonable(self.value), "text": self.text,
                "program": self.program, "cited_steps": list(self.cited_steps),
                "attempts": [a.to_json() for a in self.attempts],
                "run_dir": str(self.run_dir) if self.run_dir else None}

    def __str__(self) -> str:
        cites = f" (steps {', '.join(map(str, self.cited_steps))})" if self.cited_steps else ""
        return f"{self.text}{cites}"

    def __repr__(self) -> str:
        return (f"AgentAnswer({self.text!r}, attempts={len(self.attempts)}, "
                f"cited_steps={list(self.cited_steps)})")


class AgentFailed(VistraceError):
    """The agent gave up: no attempt produced a program that checked and ran.

    ``attempts`` holds every attempt (program, problems, error, raw model output); ``run`` is the
    last run that was started, if any (its trace shows where it failed).
    """

    def __init__(self, message: str, attempts: list[Attempt], *, question: str = "", run: Any = None,
                 run_dir: Path | None = None, hint: str | None = None):
        last = attempts[-1] if attempts else None
        err = (last.error or {}) if last else {}
        where = Location(line=err.get("line"), col=err.get("col"), step=err.get("step"), tool=err.get("tool"))
        super().__init__(message, where=where, hint=hint)
        self.attempts = list(attempts)
        self.question = question
        self.run = run
        self.run_dir = run_dir

    @property
    def stage(self) -> str:
        """How far the last attempt got: ``llm``, ``extract``, ``check`` or ``run``."""
        return self.attempts[-1].stage if self.attempts else "llm"

    def to_json(self) -> dict:
        out = super().to_json()
        out["attempts"] = [a.to_json() for a in self.attempts]
        out["question"] = self.question
        out["run_dir"] = str(self.run_dir) if self.run_dir else None
        return out
