"""vistrace: agentic visual programming with sandboxed programs and explainable traces.

``import vistrace`` stays light: the API below loads its machinery on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


if TYPE_CHECKING:  # pragma: no cover
    from vistrace.agent.agent import Agent

    from .api import Run

__all__ = ["Agent", "Run", "check", "run", "__version__"]


def run(program: str, /, **inputs: Any) -> "Run":
    """Parse, check and run a program (source text or a path to a ``.vp`` file) on named inputs.

    Image inputs may be paths, PIL images or :class:`vistrace.values.Image`. Returns a :class:`Run`
    with ``.value``, ``.trace`` and ``.save(dir)``; a runtime failure is kept in ``run.error``.
    """
    from .api import run as _run

    return _run(program, **inputs)


def check(program: str) -> list:
    """Statically check a program (text or path); returns every problem found (empty = accepted)."""
    from .api import check as _check

    return _check(program)


def __getattr__(name: str):
    if name == "Run":
        from .api import Run

        return Run
    if name == "Agent":
        from vistrace.agent.agent import Agent

        return Agent
    raise AttributeError(f"module 'vistrace' has no attribute {name!r}")
