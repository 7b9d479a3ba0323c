"""The backend protocol: an expert (model + runtime) that answers one tool.

A tool may have several backends; each says what it needs and whether it can run here. Choosing
among them is a visible step: the choice and its reason land in the trace.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""
    fix: str | None = None  # the exact command or setting that makes it available

    def __bool__(self) -> bool:
        return self.ok


class Backend(ABC):
    """One expert for one tool.

    Subclasses set ``tool``, ``name``, ``model`` and ``version``; ``availability`` must be cheap
    (no weights loaded); ``run`` does the work with arguments already validated by the tool.
    """

    tool: ClassVar[str] = ""
    name: ClassVar[str] = ""
    model: ClassVar[str] = ""
    version: ClassVar[str] = ""
    priority: ClassVar[int] = 0  # higher wins when several backends are available and suitable

    @abstractmethod
    def availability(self) -> Availability:
        """Whether this backend can run here, and if not, why and how to fix it."""

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        """Whether this backend suits these arguments (e.g. the query is in its vocabulary), and why."""
        return True, f"{self.name} is available"

    def vocabulary(self) -> dict[str, tuple[str, ...]]:
        """Closed vocabularies: parameter name -> the words this backend understands there (a COCO
        detector's class names for ``query``). Empty when every parameter is open. The planner's
        grammar offers only these words when every available backend of the tool has one."""
        return {}

    @abstractmethod
    def run(self, **args: Any) -> Any:
        """Answer the tool for these (validated) arguments."""

    def describe(self) -> dict[str, Any]:
        a = self.availability()
        return {"tool": self.tool, "backend": self.name, "model": self.model, "version": self.version,
                "available": a.ok, "reason": a.reason, "fix": a.fix}


class WrappedBackend(Backend):
    """A backend standing in for ``inner`` (batched, or answered elsewhere): the same tool, name,
    priority, model, version, availability and vocabulary; subclasses say how in ``how`` (added to
    the reason for choosing it) and ``extra`` (added to ``describe()``), and implement ``run``."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.tool, self.name, self.priority = inner.tool, inner.name, inner.priority

    @property
    def model(self) -> str:  # type: ignore[override]
        return self.inner.model

    @property
    def version(self) -> str:  # type: ignore[override]
        return self.inner.version

    def how(self) -> str:
        return ""

    def extra(self) -> dict[str, Any]:
        return {}

    def availability(self) -> Availability:
        return self.inner.availability()

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        ok, why = self.inner.suits(args)
        return ok, f"{why} ({self.how()})" if self.how() else why

    def vocabulary(self) -> dict[str, tuple[str, ...]]:
        return self.inner.vocabulary()

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), **self.extra()}


def accepts(backend: Backend, name: str) -> bool:
    """Whether ``backend.run`` names the parameter ``name`` (a ``**kwargs`` catch-all does not count).

    Tools pass optional arguments (``ask``'s ``context``, the ``ctx`` that lets a backend call other
    tools) only to backends that declare them, so older backends keep their ``run`` signature."""
    try:
        params = inspect.signature(backend.run).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(name)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
