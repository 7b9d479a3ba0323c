"""The program language: a safe subset of Python, parsed with ``ast`` and run by our own evaluator.

Phases are separate functions: :func:`parse` -> :func:`check` -> :func:`run`.
"""

from __future__ import annotations

from typing import Any

from .checker import check, errors
from .interface import CallSite, ToolCaller, ToolTable
from .interpreter import Interpreter, ModuleResult, Outcome
from .limits import Budget, Limits
from .problems import Problem
from .program import InputSpec, Program, parse


def run(program: Program, tools: ToolTable, caller: ToolCaller, inputs: dict[str, Any],
        limits: Limits | None = None, parallel: int = 1) -> Outcome:
    """Run a checked program; tool calls go through ``caller``."""
    return Interpreter(program, tools, caller, limits, parallel).run(inputs)


__all__ = ["Budget", "CallSite", "InputSpec", "Interpreter", "Limits", "ModuleResult", "Outcome", "Problem",
           "Program", "ToolCaller", "ToolTable", "check", "errors", "parse", "run"]
