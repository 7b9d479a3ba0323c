"""Boxes and detections, always in root-image pixel coordinates (xyxy)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar

from .base import Value
from .draw import draw_box, rgb_canvas


class Box(Value):
    """An axis-aligned box ``(x1, y1, x2, y2)`` in root-image pixels, with an optional label and score."""

    type_name: ClassVar[str] = "Box"
    public: ClassVar[frozenset[str]] = frozenset(
        {"x1", "y1", "x2", "y2", "label", "score", "width", "height", "area", "center", "cx", "cy",
         "xyxy", "iou", "expand", "clip", "contains", "summary"}
    )
    __slots__ = ("x1", "y1", "x2", "y2", "label", "score", "_frozen")
    # field types (the planner's grammar reads them)
    x1: float
    y1: float
    x2: float
    y2: float
    label: str
    score: float | None

    def __init__(self, x1: float, y1: float, x2: float, y2: float, label: str = "", score: float | None = None):
        vals = [float(v) for v in (x1, y1, x2, y2)]
        if any(v != v for v in vals):
            raise ValueError("box coordinates must be numbers, got NaN")
        if vals[2] < vals[0] or vals[3] < vals[1]:
            raise ValueError(f"box needs x1 <= x2 and y1 <= y2, got {tuple(vals)}")
        self.x1, self.y1, self.x2, self.y2 = vals
        self.label = str(label)
        self.score = None if score is None else float(score)
        self._freeze()

    # geometry -------------------------------------------------------------
    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return self.width * self.height

    @property
    def cx(self) -> float:
        return (self.x1 + self.x2) / 2

    @property
    def cy(self) -> float:
        return (self.y1 + self.y2) / 2

    @property
    def center(self) -> tuple[float, float]:
        return (self.cx, self.cy)

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def iou(self, other: "Box") -> float:
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def contains(self, x: float, y: float) -> bool:
        return self.x1 <= x <= self.x2 and self.y1 <= y <= self.y2

    def expand(self, factor: float) -> "Box":
        """Scale width and height by ``factor`` about the centre."""
        hw, hh = self.width * factor / 2, self.height * factor / 2
        return Box(self.cx - hw, self.cy - hh, self.cx + hw, self.cy + hh, self.label, self.score)

    def clip(self, width: float, height: float) -> "Box":
        return Box(
            min(max(self.x1, 0), width), min(max(self.y1, 0), height),
            min(max(self.x2, 0), width), min(max(self.y2, 0), height), self.label, self.score,
        )

    def replace(self, **changes) -> "Box":
        d = {"x1": self.x1, "y1": self.y1, "x2": self.x2, "y2": self.y2, "label": self.label, "score": self.score}
        d.update(changes)
        return Box(**d)

    # protocol -------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Box) and (self.xyxy, self.label, self.score) == (other.xyxy, other.label, other.score)

    def __hash__(self) -> int:
        return hash((self.xyxy, self.label, self.score))

    def __repr__(self) -> str:
        return f"Box({self.x1:g}, {self.y1:g}, {self.x2:g}, {self.y2:g}, label={self.label!r}, score={self.score})"

    def summary(self) -> str:
        lab = f"{self.label} " if self.label else ""
        sc = f" {self.score:.2f}" if self.score is not None else ""
        return f"{lab}[{self.x1:.0f},{self.y1:.0f},{self.x2:.0f},{self.y2:.0f}]{sc}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "Box", "xyxy": [self.x1, self.y1, self.x2, self.y2], "label": self.label, "score": self.score}

    @classmethod
    def from_json(cls, d: dict) -> "Box":
        return cls(*d["xyxy"], label=d.get("label", ""), score=d.get("score"))

    def draw(self, canvas):
        out = rgb_canvas(canvas)
        return draw_box(out, self.xyxy, self.summary() if self.label else "")


def _as_box(b: Any) -> Box:
    if isinstance(b, Box):
        return b
    if isinstance(b, Detections):
        if not len(b):
            raise ValueError("empty Detections where one box was expected")
        return b[0]
    if isinstance(b, (list, tuple)) and len(b) == 4:
        return Box(*b)
    raise TypeError(f"expected a Box or [x1, y1, x2, y2], got {type(b).__name__}")


class Detections(Value, Sequence):
    """An ordered, immutable sequence of boxes (best first when they come from a detector).

    Supports ``len``, indexing, slicing, ``+`` (concatenation) and boolean selection
    ``dets[[True, False, ...]]``; filtering returns new Detections.
    """

    type_name: ClassVar[str] = "Detections"
    public: ClassVar[frozenset[str]] = frozenset(
        {"boxes", "count", "labels", "scores", "label", "above", "below", "largest", "smallest", "best",
         "leftmost", "rightmost", "topmost", "bottommost", "left_of", "right_of", "higher_than",
         "lower_than", "sorted_by", "first", "query", "image_size", "summary", "nms"}
    )
    __slots__ = ("boxes", "query", "image_size", "_frozen")
    # field types (the planner's grammar reads them)
    boxes: tuple[Box, ...]
    query: str
    image_size: tuple[int, int] | None

    def __init__(self, boxes: Iterable[Box] = (), query: str = "", image_size: tuple[int, int] | None = None):
        self.boxes = tuple(_as_box(b) for b in boxes)
        self.query = str(query)
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self._freeze()

    def _new(self, boxes: Iterable[Box]) -> "Detections":
        return Detections(boxes, self.query, self.image_size)

    # sequence -------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return self._new(self.boxes[idx])
        if isinstance(idx, (list, tuple)):
            if len(idx) != len(self.boxes) or not all(isinstance(v, bool) for v in idx):
                raise IndexError(f"boolean selection needs {len(self.boxes)} booleans, got {len(idx)} values")
            return self._new(b for b, keep in zip(self.boxes, idx) if keep)
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise TypeError(f"Detections index must be an int, a slice or a list of booleans, got {type(idx).__name__}")
        if not -len(self.boxes) <= idx < len(self.boxes):
            raise IndexError(f"detection index {idx} out of range: there are {len(self.boxes)} detections")
        return self.boxes[idx]

    def __iter__(self) -> Iterator[Box]:
        return iter(self.boxes)

    def __add__(self, other: "Detections") -> "Detections":
        if not isinstance(other, Detections):
            return NotImplemented
        query = ",".join(q for q in (self.query, other.query) if q)
        return Detections(self.boxes + other.boxes, query, self.image_size or other.image_size)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Detections) and self.boxes == other.boxes

    def __hash__(self) -> int:
        return hash(self.boxes)

    def __bool__(self) -> bool:
        return bool(self.boxes)

    def __repr__(self) -> str:
        return f"Detections({list(self.boxes)!r}, query={self.query!r})"

    # queries --------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.boxes)

    @property
    def labels(self) -> list[str]:
        return [b.label for b in self.boxes]

    @property
    def scores(self) -> list[float | None]:
        return [b.score for b in self.boxes]

    def label(self, name: str) -> "Detections":
        """Only the boxes whose label equals ``name`` (case-insensitive); a comma list keeps any of them."""
        wanted = {n.strip().lower() for n in str(name).split(",") if n.strip()}
        return Detections((b for b in self.boxes if b.label.lower() in wanted), str(name), self.image_size)

    def above(self, threshold: float) -> "Detections":
        """Only the boxes with score > threshold (boxes without a score are kept)."""
        return self._new(b for b in self.boxes if b.score is None or b.score > threshold)

    def below(self, threshold: float) -> "Detections":
        return self._new(b for b in self.boxes if b.score is not None and b.score <= threshold)

    def sorted_by(self, key: str = "score", descending: bool = True) -> "Detections":
        keys = {
            "score": lambda b: b.score if b.score is not None else float("-inf"),
            "area": lambda b: b.area, "x": lambda b: b.cx, "y": lambda b: b.cy,
        }
        if key not in keys:
            raise ValueError(f"sorted_by key must be one of {sorted(keys)}, got {key!r}")
        return self._new(sorted(self.boxes, key=keys[key], reverse=descending))

    def _pick(self, key, reverse: bool) -> Box:
        if not self.boxes:
            raise ValueError(f"no detections{' for ' + repr(self.query) if self.query else ''}: nothing to pick")
        return (max if reverse else min)(self.boxes, key=key)

    def largest(self) -> Box:
        return self._pick(lambda b: b.area, True)

    def smallest(self) -> Box:
        return self._pick(lambda b: b.area, False)

    def best(self) -> Box:
        return self._pick(lambda b: b.score if b.score is not None else float("-inf"), True)

    def first(self) -> Box:
        """The first box in order (the most confident one for detector output)."""
        if not self.boxes:
            return self._pick(lambda b: 0, True)  # raises the 'nothing to pick' error
        return self.boxes[0]

    def leftmost(self) -> Box:
        return self._pick(lambda b: b.cx, False)

    def rightmost(self) -> Box:
        return self._pick(lambda b: b.cx, True)

    def topmost(self) -> Box:
        return self._pick(lambda b: b.cy, False)

    def bottommost(self) -> Box:
        return self._pick(lambda b: b.cy, True)

    def left_of(self, ref) -> "Detections":
        r = _as_box(ref)
        return self._new(b for b in self.boxes if b.cx < r.cx)

    def right_of(self, ref) -> "Detections":
        r = _as_box(ref)
        return self._new(b for b in self.boxes if b.cx > r.cx)

    def higher_than(self, ref) -> "Detections":
        r = _as_box(ref)
        return self._new(b for b in self.boxes if b.cy < r.cy)

    def lower_than(self, ref) -> "Detections":
        r = _as_box(ref)
        return self._new(b for b in self.boxes if b.cy > r.cy)

    def nms(self, iou: float = 0.5, per_label: bool = True) -> "Detections":
        """Greedy non-maximum suppression, highest score first."""
        kept: list[Box] = []
        for b in self.sorted_by("score").boxes:
            if all(not (not per_label or k.label == b.label) or b.iou(k) <= iou for k in kept):
                kept.append(b)
        return self._new(kept)

    # value protocol -------------------------------------------------------
    def summary(self) -> str:
        if not self.boxes:
            return f"0 detections{' of ' + repr(self.query) if self.query else ''}"
        shown = ", ".join(b.summary() for b in self.boxes[:5])
        more = f", … {len(self.boxes) - 5} more" if len(self.boxes) > 5 else ""
        return f"{len(self.boxes)} detections: {shown}{more}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "Detections", "query": self.query, "image_size": self.image_size,
                "boxes": [b.to_json() for b in self.boxes]}

    @classmethod
    def from_json(cls, d: dict) -> "Detections":
        size = d.get("image_size")
        return cls((Box.from_json(b) for b in d["boxes"]), d.get("query", ""), tuple(size) if size else None)

    def draw(self, canvas):
        out = rgb_canvas(canvas)
        for b in self.boxes:
            draw_box(out, b.xyxy, b.summary())
        return out
