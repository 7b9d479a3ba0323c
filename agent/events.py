"""Typed events of one agent turn, in the order they happen.

``Agent.stream(images, question)`` yields them; the chat prints them as they come.  Each event has
a ``kind`` (a stable string for dispatch and JSON) and the ``attempt`` it belongs to (1 = the first
plan, 2 = the first repair, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from .result import AgentAnswer, AgentFailed


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    attempt: int

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class PlanStarted(Event):
    """The planner is asked for a program; ``mode`` is how its output is constrained."""

    kind: ClassVar[str] = "plan_started"
    mode: str = "plain"          # "grammar" | "json_schema" | "plain"
    repair: bool = False
    model: str = ""


@dataclass(frozen=True)
class LLMToken(Event):
    """A piece of the planner's output, as it is generated."""

    kind: ClassVar[str] = "llm_token"
    text: str = ""


@dataclass(frozen=True)
class ProgramReady(Event):
    """The program extracted from the planner's output."""

    kind: ClassVar[str] = "program"
    program: str = ""


@dataclass(frozen=True)
class CheckProblems(Event):
    """The output held no usable program, or ``check`` rejected it: every problem, with where."""

    kind: ClassVar[str] = "check_problems"
    problems: tuple[str, ...] = ()
    stage: str = "check"         # "extract" (no program in the output) | "check"


@dataclass(frozen=True)
class StepDone(Event):
    """One step of the run's trace: id, line, source, tool, backend, output or error."""

    kind: ClassVar[str] = "step"
    step: dict[str, Any] = field(default_factory=dict)

    @property
    def line_text(self) -> str:
        s = self.step
        head = f"step {s.get('id')}" + (f" line {s['line']}" if s.get("line") is not None else "")
        tool = s.get("tool") or s.get("call") or "?"
        backend = f" [{s['backend']}]" if s.get("backend") else ""
        if s.get("error"):
            return f"{head} {tool}{backend} -> ERROR {s['error'].get('type')}: {s['error'].get('message')}"
        return f"{head} {tool}{backend} -> {s.get('output')}"


@dataclass(frozen=True)
class RuntimeFailed(Event):
    """The run stopped with an error (``error`` is its JSON form: type, message, line, step, tool, hint)."""

    kind: ClassVar[str] = "runtime_error"
    error: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class RepairStarted(Event):
    """Another attempt begins, given the problems of the previous one."""

    kind: ClassVar[str] = "repair"
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answered(Event):
    """The turn is answered; ``answer`` is the :class:`AgentAnswer`."""

    kind: ClassVar[str] = "answer"
    answer: "AgentAnswer | None" = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "attempt": self.attempt,
                "answer": self.answer.to_json() if self.answer is not None else None}


@dataclass(frozen=True)
class Failed(Event):
    """Every attempt failed (or the model could not be used); ``error`` is the :class:`AgentFailed`."""

    kind: ClassVar[str] = "failed"
    error: "AgentFailed | None" = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "attempt": self.attempt,
                "error": self.error.to_json() if self.error is not None else None}


EVENT_KINDS = {c.kind: c for c in (PlanStarted, LLMToken, ProgramReady, CheckProblems, StepDone, RuntimeFailed,
                                   RepairStarted, Answered, Failed)}
