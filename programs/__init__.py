"""The program library (``library/*.vp``): example and family programs that planners and users start from."""

from __future__ import annotations

from importlib import resources


def library() -> dict[str, str]:
    """Name -> source text of every program shipped in the library."""
    root = resources.files(__name__) / "library"
    return {p.name.removesuffix(".vp"): p.read_text() for p in root.iterdir() if p.name.endswith(".vp")}
