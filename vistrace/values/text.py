"""OCR output: lines (and their words) with boxes in root-image pixels and confidences."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, ClassVar

from .base import Value
from .boxes import Box, Detections
from .draw import draw_box, rgb_canvas

# VPEval's text normalisation (aszala/VPEval, src/evaluation_functions.py, ``ocr``):
# strip the characters . , ? ! * then lower-case; a target matches when it equals a recognised text.
_VPEVAL_STRIP = str.maketrans("", "", ".,?!*")


def normalize_vpeval(text: str) -> str:
    """VPEval's normalisation: drop ``. , ? ! *``, lower-case, ASCII only, trimmed."""
    return str(text).strip().translate(_VPEVAL_STRIP).lower().encode("ascii", "ignore").decode().strip()


class TextLine(Value):
    """One recognised line (or word): its text, box in root pixels, confidence and optional words."""

    type_name: ClassVar[str] = "TextLine"
    public: ClassVar[frozenset[str]] = frozenset({"text", "box", "confidence", "words", "summary"})
    __slots__ = ("text", "box", "confidence", "words", "_frozen")
    # field types (the planner's grammar reads them)
    text: str
    box: Box
    confidence: float
    words: tuple[TextLine, ...]

    def __init__(self, text: str, box: Box, confidence: float = 1.0, words: tuple["TextLine", ...] = ()):
        self.text = str(text)
        self.box = box
        self.confidence = float(confidence)
        self.words = tuple(words)
        self._freeze()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextLine) and (self.text, self.box, self.confidence, self.words) == (
            other.text, other.box, other.confidence, other.words)

    def __hash__(self) -> int:
        return hash((self.text, self.box))

    def __repr__(self) -> str:
        return f"TextLine({self.text!r}, {self.box!r}, {self.confidence:.2f})"

    def summary(self) -> str:
        return f"{self.text!r} ({self.confidence:.2f})"

    def to_json(self) -> dict[str, Any]:
        return {"type": "TextLine", "text": self.text, "box": self.box.to_json(), "confidence": self.confidence,
                "words": [w.to_json() for w in self.words]}

    @classmethod
    def from_json(cls, d: dict) -> "TextLine":
        return cls(d["text"], Box.from_json(d["box"]), d.get("confidence", 1.0),
                   tuple(cls.from_json(w) for w in d.get("words", ())))


class TextLines(Value):
    """Recognised text in reading order. ``text`` joins the lines; ``tokens`` are VPEval-normalised words."""

    type_name: ClassVar[str] = "TextLines"
    public: ClassVar[frozenset[str]] = frozenset(
        {"lines", "text", "tokens", "words", "find", "contains", "count", "boxes", "summary", "above"}
    )
    __slots__ = ("lines", "_frozen")
    # field types (the planner's grammar reads them)
    lines: tuple[TextLine, ...]

    def __init__(self, lines=()):
        self.lines = tuple(lines)
        self._freeze()

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[TextLine]:
        return iter(self.lines)

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return TextLines(self.lines[idx])
        return self.lines[idx]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextLines) and self.lines == other.lines

    def __hash__(self) -> int:
        return hash(self.lines)

    @property
    def count(self) -> int:
        return len(self.lines)

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def words(self) -> list[TextLine]:
        out: list[TextLine] = []
        for line in self.lines:
            out.extend(line.words or (line,))
        return out

    @property
    def tokens(self) -> list[str]:
        """Every whitespace-separated token, normalised as VPEval does."""
        toks = []
        for line in self.lines:
            toks.extend(t for t in (normalize_vpeval(w) for w in re.split(r"\s+", line.text)) if t)
        return toks

    @property
    def boxes(self) -> Detections:
        return Detections(Box(*ln.box.xyxy, label=ln.text, score=ln.confidence) for ln in self.lines)

    def above(self, threshold: float) -> "TextLines":
        return TextLines(ln for ln in self.lines if ln.confidence > threshold)

    def find(self, text: str) -> "TextLines":
        """Lines containing ``text`` (case-insensitive substring)."""
        needle = str(text).lower()
        return TextLines(ln for ln in self.lines if needle in ln.text.lower())

    def contains(self, text: str) -> bool:
        return bool(self.find(text).lines)

    def __repr__(self) -> str:
        return f"TextLines({len(self.lines)} lines)"

    def summary(self) -> str:
        if not self.lines:
            return "no text"
        shown = " | ".join(ln.text for ln in self.lines[:6])
        more = f" | … {len(self.lines) - 6} more" if len(self.lines) > 6 else ""
        return f"{len(self.lines)} lines: {shown}{more}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "TextLines", "lines": [ln.to_json() for ln in self.lines]}

    @classmethod
    def from_json(cls, d: dict) -> "TextLines":
        return cls(TextLine.from_json(x) for x in d["lines"])

    def draw(self, canvas):
        out = rgb_canvas(canvas)
        for ln in self.lines:
            draw_box(out, ln.box.xyxy, ln.text[:30], color=(0, 130, 200))
        return out
