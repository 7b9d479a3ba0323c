"""Exception classes shared by every layer.

Every error a user can meet is one of these classes, never a bare string to match.  Each carries
*where* it happened (source line:col, step id, tool) so that the trace, the CLI and the planner can
point at it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where in a program something happened (1-based line, 0-based column as in ``ast``)."""

    line: int | None = None
    col: int | None = None
    step: int | None = None
    tool: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.line is not None:
            parts.append(f"line {self.line}:{(self.col or 0) + 1}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        if self.tool:
            parts.append(f"tool {self.tool}")
        return ", ".join(parts)


class VistraceError(Exception):
    """Base class of every error vistrace raises on purpose."""

    def __init__(self, message: str, *, where: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where or Location()
        self.hint = hint

    def with_location(self, where: Location) -> "VistraceError":
        """Fill in location fields that are still unknown (never overwrite known ones)."""
        old = self.where
        self.where = Location(
            line=old.line if old.line is not None else where.line,
            col=old.col if old.col is not None else where.col,
            step=old.step if old.step is not None else where.step,
            tool=old.tool or where.tool,
        )
        return self

    def __str__(self) -> str:
        text = self.message
        where = str(self.where)
        if where:
            text = f"{where}: {text}"
        if self.hint:
            text = f"{text} (hint: {self.hint})"
        return text

    def to_json(self) -> dict:
        return {
            "type": type(self).__name__,
            "message": self.message,
            "line": self.where.line,
            "col": self.where.col,
            "step": self.where.step,
            "tool": self.where.tool,
            "hint": self.hint,
        }


class InputError(VistraceError):
    """An input (file, argument, value) is not what was expected."""


class ProgramError(VistraceError):
    """The program text cannot be accepted (syntax or static check)."""

    def __init__(self, message: str, problems: list | None = None, **kw):
        super().__init__(message, **kw)
        self.problems = list(problems or [])


class RuntimeProgramError(VistraceError):
    """The program failed while running (bad value, failing operation)."""


class LimitExceeded(RuntimeProgramError):
    """A configured limit (steps, time, loop iterations, size, depth) was reached."""

    def __init__(self, limit: str, value: float, message: str | None = None, **kw):
        super().__init__(message or f"limit '{limit}' exceeded (limit is {value})", **kw)
        self.limit = limit
        self.value = value


class ToolError(RuntimeProgramError):
    """A tool failed on its inputs."""


class ToolArgumentError(ToolError):
    """Arguments given to a tool do not match its signature."""


class BackendUnavailable(ToolError):
    """No backend of a tool can run here; the message names what is missing and the fix."""

    def __init__(self, message: str, *, fix: str | None = None, brief: str | None = None, **kw):
        super().__init__(message, hint=fix, **kw)
        self.fix = fix
        # what a planner needs (why the installed backends refused these arguments), without the
        # set-up advice for backends that are not configured; None when the message is already short
        self.brief = brief


class IsolationError(RuntimeProgramError):
    """The isolated worker process that ran the program failed: it crashed (a signal), ran out of
    memory, was killed, exited early, or broke the message protocol.  ``reason`` is one of
    ``crashed``, ``memory``, ``killed``, ``exited``, ``protocol``, ``start``; ``returncode`` is the
    worker's exit status (negative: the signal number) when it is known."""

    def __init__(self, message: str, *, reason: str = "crashed", returncode: int | None = None, **kw):
        super().__init__(message, **kw)
        self.reason = reason
        self.returncode = returncode
