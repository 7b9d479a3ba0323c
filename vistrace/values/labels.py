"""Whole-image labels: a ranked list of (label, score), e.g. ImageNet classes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from .base import Value


class Labels(Value):
    """Ranked labels for a whole image (best first)."""

    type_name: ClassVar[str] = "Labels"
    public: ClassVar[frozenset[str]] = frozenset({"items", "top", "names", "scores", "score_of", "summary", "count"})
    __slots__ = ("items", "_frozen")
    # field types (the planner's grammar reads them)
    items: tuple[tuple[str, float], ...]

    def __init__(self, items=()):
        self.items = tuple((str(label), float(score)) for label, score in items)
        self._freeze()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[tuple[str, float]]:
        return iter(self.items)

    def __getitem__(self, idx):
        return self.items[idx]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Labels) and self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    @property
    def count(self) -> int:
        return len(self.items)

    @property
    def top(self) -> str:
        if not self.items:
            raise ValueError("no labels")
        return self.items[0][0]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.items]

    @property
    def scores(self) -> list[float]:
        return [s for _, s in self.items]

    def score_of(self, label: str) -> float:
        """The score of ``label`` (case-insensitive), 0.0 when it is not among the labels."""
        wanted = str(label).lower()
        return next((s for n, s in self.items if n.lower() == wanted), 0.0)

    def __repr__(self) -> str:
        return f"Labels({list(self.items)!r})"

    def summary(self) -> str:
        if not self.items:
            return "no labels"
        return ", ".join(f"{n} {s:.2f}" for n, s in self.items[:5])

    def to_json(self) -> dict[str, Any]:
        return {"type": "Labels", "items": [[n, s] for n, s in self.items]}

    @classmethod
    def from_json(cls, d: dict) -> "Labels":
        return cls((n, s) for n, s in d["items"])
