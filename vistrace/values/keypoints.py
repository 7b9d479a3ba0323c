"""Body keypoints (pose): per person, named points in root-image pixels with scores."""

from __future__ import annotations

from typing import Any, ClassVar

from .base import Value
from .boxes import Box
from .draw import rgb_canvas

# COCO keypoint order (MoveNet and most pose models use it)
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")
SKELETON = (("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
            ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"),
            ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"),
            ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
            ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"))


class Keypoints(Value):
    """One person's keypoints: name -> (x, y, score) in root pixels, plus an overall score."""

    type_name: ClassVar[str] = "Keypoints"
    public: ClassVar[frozenset[str]] = frozenset({"points", "score", "names", "point", "box", "visible", "summary"})
    __slots__ = ("points", "score", "_frozen")
    # field types (the planner's grammar reads them)
    points: dict[str, tuple[float, float, float]]
    score: float

    def __init__(self, points: dict[str, tuple[float, float, float]], score: float = 0.0):
        self.points = {str(k): (float(v[0]), float(v[1]), float(v[2])) for k, v in dict(points).items()}
        self.score = float(score)
        self._freeze()

    @property
    def names(self) -> list[str]:
        return list(self.points)

    def point(self, name: str) -> tuple[float, float, float]:
        if name not in self.points:
            raise ValueError(f"no keypoint {name!r}; known: {', '.join(self.points)}")
        return self.points[name]

    def visible(self, threshold: float = 0.3) -> list[str]:
        return [n for n, (_, _, s) in self.points.items() if s > threshold]

    def box(self, threshold: float = 0.3) -> Box:
        pts = [(x, y) for x, y, s in self.points.values() if s > threshold]
        if not pts:
            raise ValueError("no keypoint above the threshold")
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        return Box(min(xs), min(ys), max(xs), max(ys), label="person", score=self.score)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keypoints) and (self.points, self.score) == (other.points, other.score)

    def __hash__(self) -> int:
        return hash((tuple(self.points.items()), self.score))

    def __repr__(self) -> str:
        return f"Keypoints({len(self.points)} points, score={self.score:.2f})"

    def summary(self) -> str:
        return f"pose {self.score:.2f}: {len(self.visible())}/{len(self.points)} keypoints visible"

    def to_json(self) -> dict[str, Any]:
        return {"type": "Keypoints", "score": self.score, "points": {k: list(v) for k, v in self.points.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "Keypoints":
        return cls({k: tuple(v) for k, v in d["points"].items()}, d.get("score", 0.0))

    def draw(self, canvas, threshold: float = 0.3):
        from PIL import ImageDraw

        out = rgb_canvas(canvas)
        d = ImageDraw.Draw(out)
        r = max(2, round(min(out.size) / 150))
        for a, b in SKELETON:
            if a in self.points and b in self.points and self.points[a][2] > threshold and self.points[b][2] > threshold:
                d.line([self.points[a][:2], self.points[b][:2]], fill=(0, 200, 255), width=max(1, r // 2 + 1))
        for x, y, s in self.points.values():
            if s > threshold:
                d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 80, 0))
        return out
