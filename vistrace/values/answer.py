"""An answer with its evidence: the steps, boxes and crops it rests on (root-image coordinates)."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Value
from .boxes import Box
from .draw import draw_banner, draw_box, rgb_canvas


class Answer(Value):
    """A final value plus where it came from, so every answer can show where it looked."""

    type_name: ClassVar[str] = "Answer"
    public: ClassVar[frozenset[str]] = frozenset({"value", "boxes", "steps", "explanation", "summary"})
    __slots__ = ("value", "boxes", "steps", "explanation", "_frozen")
    # field types (the planner's grammar reads them)
    value: Any
    boxes: tuple[Box, ...]
    steps: tuple[int, ...]
    explanation: str

    def __init__(self, value: Any, boxes: tuple[Box, ...] = (), steps: tuple[int, ...] = (), explanation: str = ""):
        self.value = value
        self.boxes = tuple(boxes)
        self.steps = tuple(int(s) for s in steps)
        self.explanation = str(explanation)
        self._freeze()

    def __bool__(self) -> bool:
        return bool(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Answer) and (self.value, self.boxes, self.steps, self.explanation) == (
            other.value, other.boxes, other.steps, other.explanation)

    def __hash__(self) -> int:
        return hash((repr(self.value), self.boxes, self.steps))

    def __repr__(self) -> str:
        return f"Answer({self.value!r}, {len(self.boxes)} boxes, steps={list(self.steps)})"

    def summary(self) -> str:
        from .codec import summarize

        ev = f" — {self.explanation}" if self.explanation else ""
        return f"{summarize(self.value)}{ev}"

    def to_json(self) -> dict[str, Any]:
        from .codec import to_jsonable

        return {"type": "Answer", "value": to_jsonable(self.value), "boxes": [b.to_json() for b in self.boxes],
                "steps": list(self.steps), "explanation": self.explanation}

    def draw(self, canvas):
        """The evidence boxes on the canvas; a verdict (True/False) also gets its explanation as a banner."""
        out = rgb_canvas(canvas)
        for b in self.boxes:
            draw_box(out, b.xyxy, b.label or "evidence", color=(255, 200, 0))
        if isinstance(self.value, bool) and self.explanation:
            draw_banner(out, ("PASS: " if self.value else "FAIL: ") + self.explanation,
                        (40, 140, 60) if self.value else (180, 40, 40))
        return out
