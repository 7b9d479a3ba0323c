"""A problem found in a program before it runs: where, what, and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal


@dataclass(frozen=True)
class Problem:
    """One static problem. ``line`` is 1-based, ``col`` 0-based (as ``ast``); ``text`` is the offending source."""

    line: int
    col: int
    message: str
    text: str = ""
    hint: str | None = None
    code: str = "error"
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        out = f"line {self.line}:{self.col + 1}: {self.message}"
        if self.hint:
            out += f" (hint: {self.hint})"
        if self.text:
            snippet = self.text if len(self.text) <= 80 else self.text[:77] + "..."
            out += f"\n    {snippet}"
        return out

    def to_json(self) -> dict:
        return asdict(self)
