"""The program library (``library/*.vp``): example and family programs that planners and users start from."""

from __future__ import annotations

from importlib import resources


def library() -> dict[str, str]:
    """Name -> source text of every program shipped in the library."""
    root = resources.files(__name__) / "library"
    if not root.is_dir():
        return {}
    return {p.name.removesuffix(".vp"): p.read_text() for p in sorted(root.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".vp")}
