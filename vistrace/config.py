"""Where vistrace keeps its files: one home folder, read from the environment at call time.

``VISTRACE_HOME`` names the home folder; without it the home is ``$XDG_CACHE_HOME/vistrace`` when
``XDG_CACHE_HOME`` is set, else ``~/.cache/vistrace``.  Inside it:

- ``cache/results``  the tool-result cache (override with ``VISTRACE_CACHE_DIR``)
- ``runs``           run folders saved without an explicit destination

Nothing here creates a directory: callers create what they write into, when they write it.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "VISTRACE_HOME"
CACHE_ENV = "VISTRACE_CACHE_DIR"


def _expand(value: str) -> Path:
    return Path(os.path.expandvars(os.path.expanduser(value)))


def home() -> Path:
    """The vistrace home folder (``$VISTRACE_HOME``, default ``~/.cache/vistrace``); not created here."""
    value = os.environ.get(HOME_ENV, "").strip()
    if value:
        return _expand(value)
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = _expand(xdg) if xdg else Path.home() / ".cache"
    return base / "vistrace"


def cache_dir() -> Path:
    """The tool-result cache folder (``$VISTRACE_CACHE_DIR``, default ``home()/cache/results``); not created here."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return _expand(value)
    return home() / "cache" / "results"


def runs_dir() -> Path:
    """Where run folders go when no destination is given (``home()/runs``); not created here."""
    return home() / "runs"
