"""What every evaluation set is made of: items, their results, and the set's protocol.

An :class:`EvalSet` lists its :class:`EvalItem` s, evaluates one item into a folder (its run folders
with traces) and turns the list of :class:`ItemResult` s into the named metrics of ``summary.json``.
The runner (:mod:`vistrace.evaluate.runner`) does the rest: resuming, progress, summary, report.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def slug(item_id: str, limit: int = 60) -> str:
    """A folder name for an item id: safe characters only, short, and unique (a hash is appended when changed)."""
    text = _UNSAFE.sub("_", str(item_id)).strip("._") or "item"
    if text == item_id and len(text) <= limit:
        return text
    digest = hashlib.sha1(str(item_id).encode("utf-8")).hexdigest()[:8]
    return f"{text[:limit]}-{digest}"


@dataclass(frozen=True)
class EvalItem:
    """One thing to evaluate: an id, its inputs (paths, prompts, questions) and what is expected."""

    id: str
    inputs: dict[str, Any]
    expected: Any = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModuleNote:
    """One checked module (or question) of an item: verdict, a sentence that explains it, its overlay."""

    module: str
    passed: bool
    sentence: str
    source: str = ""
    error: str | None = None
    skipped: bool = False
    overlay: str | None = None  # path relative to the item folder


@dataclass
class ItemResult:
    """What evaluating one item gave: its score (0..1), per-item numbers, report fields, module notes.

    ``metrics`` holds the item's numbers the set aggregates (e.g. ``correct``, ``latency_s``);
    ``fields`` is shown in the report table; ``runs`` are run folders relative to the item folder.
    ``error`` is set when the item could not be evaluated (it still counts, as failed).
    """

    id: str
    score: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    modules: list[ModuleNote] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    folder: str = ""  # relative to the output folder; set by the runner

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ItemResult":
        data = dict(data)
        data["modules"] = [ModuleNote(**m) for m in data.get("modules", [])]
        return cls(**data)


@runtime_checkable
class EvalSet(Protocol):
    """An evaluation set: ``vistrace eval <name>`` runs one."""

    name: str

    def items(self) -> list[EvalItem]:
        """Every item, in a stable order."""

    def evaluate(self, item: EvalItem, folder: Path) -> ItemResult:
        """Evaluate one item; write its run folders under ``folder``."""

    def metrics(self, results: list[ItemResult]) -> dict[str, float]:
        """The set's figures over all results (accuracy, per-skill accuracy, latency ...)."""

    def config(self) -> dict[str, Any]:
        """The settings that decide the numbers (judge, models, options), written to summary.json."""


def mean(values) -> float:
    """The mean of some numbers, 0.0 for none."""
    values = list(values)
    return sum(values) / len(values) if values else 0.0
