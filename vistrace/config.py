"""Where vistrace keeps its files: one home folder, read from the environment at call time.

``VISTRACE_HOME`` names the home folder; without it the home is ``$XDG_CACHE_HOME/vistrace`` when
``XDG_CACHE_HOME`` is set, else ``~/.cache/vistrace``.  Inside it:

- ``cache/results``  the tool-result cache (override with ``VISTRACE_CACHE_DIR``)
- ``models``         model files fetched by ``vistrace models fetch`` (override with ``VISTRACE_MODELS_DIR``)
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


def models_dir() -> Path:
    """Where model files live (``$VISTRACE_MODELS_DIR``, default ``home()/models``); not created here."""
    value = os.environ.get("VISTRACE_MODELS_DIR", "").strip()
    if value:
        return _expand(value)
    return home() / "models"


def model_memory_budget() -> int:
    """Bytes the in-process model cache may hold (``$VISTRACE_MODEL_MEMORY_MB``, default 4096 MB)."""
    value = os.environ.get("VISTRACE_MODEL_MEMORY_MB", "").strip()
    try:
        return int(float(value) * 2**20) if value else 4096 * 2**20
    except ValueError:
        return 4096 * 2**20


def device() -> str:
    """The compute device for torch models: ``$VISTRACE_DEVICE``, else CUDA when present, else CPU."""
    value = os.environ.get("VISTRACE_DEVICE", "").strip()
    if value:
        return value
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def runs_dir() -> Path:
    """Where run folders go when no destination is given (``home()/runs``); not created here."""
    return home() / "runs"
