"""Backend settings: one TOML file plus environment variables, read at call time.

The file is the first of these that exists:

1. ``$VISTRACE_CONFIG`` (a path; an error when it names a missing file),
2. ``./vistrace.toml`` (the project you run in),
3. ``$VISTRACE_HOME/vistrace.toml`` (default ``~/.cache/vistrace/vistrace.toml``).

Each backend has a table ``[backends.NAME]``; an environment variable ``VISTRACE_<NAME>_<KEY>``
(upper-case, ``-`` as ``_``) overrides one key, e.g. ``VISTRACE_YOLO_WEIGHTS=/models/yolo11n.pt``::

    [backends.yolo]
    weights = "/models/yolo11n.pt"     # a local file
    device = "cuda:0"

    [backends.owlv2]
    model = "google/owlv2-base-patch16-ensemble"   # a local folder, or an id in your Hugging Face cache

Other top-level tables hold settings that are not a backend's, e.g. the image pixel limit
(docs/images.md)::

    [images]
    max_pixels = 100_000_000

Settings are plain strings, numbers and booleans; nothing here loads a model.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import home
from .errors import InputError

CONFIG_ENV = "VISTRACE_CONFIG"
FILE_NAME = "vistrace.toml"


@dataclass(frozen=True)
class Settings:
    """One backend's settings and where each came from (for ``vistrace doctor``)."""

    backend: str
    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # key -> "env VISTRACE_X_Y" or "file PATH"

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def where(self, key: str) -> str:
        return self.sources.get(key, "default")


def env_name(backend: str, key: str) -> str:
    """The environment variable that sets ``key`` of ``backend``: ``VISTRACE_<BACKEND>_<KEY>``."""
    return "VISTRACE_" + re.sub(r"[^A-Za-z0-9]", "_", f"{backend}_{key}").upper()


def config_file() -> Path | None:
    """The settings file in force, or None when there is none."""
    value = os.environ.get(CONFIG_ENV, "").strip()
    if value:
        path = Path(os.path.expanduser(value))
        if not path.is_file():
            raise InputError(f"{CONFIG_ENV} names a settings file that does not exist: {path}",
                             hint=f"create it, or unset {CONFIG_ENV} to use ./{FILE_NAME} or $VISTRACE_HOME/{FILE_NAME}")
        return path
    for path in (Path.cwd() / FILE_NAME, home() / FILE_NAME):
        if path.is_file():
            return path
    return None


_PARSED: dict[tuple[str, float, int], dict[str, Any]] = {}
_TABLES: set[str] = set()  # backend table names declared by the adapters (to tell YOLO_ from YOLO_SEG_ apart)


def declare_table(backend: str) -> None:
    """Make a backend's table name known, so a longer name's variables are not read as this one's keys."""
    _TABLES.add(backend)


def _read(path: Path) -> dict[str, Any]:
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    if key not in _PARSED:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"settings file {path} is not valid TOML: {exc}",
                             hint="see the [backends.NAME] example in docs/adapters.md") from exc
        backends = data.get("backends", {})
        if not isinstance(backends, dict) or not all(isinstance(v, dict) for v in backends.values()):
            raise InputError(f"settings file {path}: 'backends' must hold tables, e.g. [backends.yolo]")
        _PARSED.clear()
        _PARSED[key] = data
    return _PARSED[key]


def backend_settings(backend: str) -> Settings:
    """The settings of one backend: its table in the settings file, overridden by environment variables."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    path = config_file()
    if path is not None:
        table = _read(path).get("backends", {}).get(backend, {})
        for k, v in table.items():
            values[k] = v
            sources[k] = f"file {path}"
    prefix = env_name(backend, "")
    longer = [env_name(t, "") for t in _TABLES if t != backend and env_name(t, "").startswith(prefix)]
    for name, raw in os.environ.items():
        if name.startswith(prefix) and raw.strip() and not any(name.startswith(p) for p in longer):
            k = name[len(prefix):].lower()
            values[k] = raw.strip()
            sources[k] = f"env {name}"
    return Settings(backend, values, sources)


def all_backend_tables() -> dict[str, dict[str, Any]]:
    """Every ``[backends.*]`` table of the settings file (for doctor); empty without a file."""
    path = config_file()
    return dict(_read(path).get("backends", {})) if path else {}


def table(name: str) -> tuple[dict[str, Any], Path | None]:
    """A top-level table of the settings file other than ``backends`` (e.g. ``[images]``), and the file it is
    in; ``({}, None)`` without a settings file."""
    path = config_file()
    if path is None:
        return {}, None
    found = _read(path).get(name, {})
    if not isinstance(found, dict):
        raise InputError(f"settings file {path}: '{name}' must be a table, e.g. [{name}]")
    return dict(found), path


def nested_table(*path: str) -> dict[str, Any]:
    """A table below the top level by its path, e.g. ``nested_table("serve", "ray")`` for ``[serve.ray]``;
    empty without a file or without that table."""
    data, file = table(path[0])
    for i, key in enumerate(path[1:], start=2):
        data = data.get(key, {})
        if not isinstance(data, dict):
            raise InputError(f"settings file {file}: [{'.'.join(path[:i])}] must be a table")
    return dict(data)
