"""What the sandbox needs from the outside world: a table of tool signatures and a way to call them.

The sandbox never imports the tools; the API layer passes objects that satisfy these protocols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from vistrace.signature import Signature


@dataclass(frozen=True)
class CallSite:
    """Where a tool call sits in the program (for the trace and for errors)."""

    line: int | None
    col: int | None
    end_line: int | None
    source: str
    target: str | None = None


class ToolTable(Protocol):
    def signature(self, name: str) -> Signature | None: ...

    def suggest(self, name: str) -> str | None: ...


class ToolCaller(Protocol):
    def begin(self, sig: Signature, site: CallSite) -> int:
        """Reserve a step (called in program order, before the arguments are ready)."""

    def call(self, step: int, sig: Signature, args: dict[str, Any]) -> Any:
        """Run the tool for a reserved step and return its value (may run on a worker thread)."""
