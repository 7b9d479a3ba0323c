"""Pixel-grid values: masks and depth maps (read-only numpy arrays over an image's pixel grid)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from .base import Value
from .boxes import Box
from .draw import color_for, rgb_canvas


def _readonly(array, dtype):
    import numpy as np

    a = np.array(array, dtype=dtype, copy=True)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array (height x width), got shape {a.shape}")
    a.flags.writeable = False
    return a


class Mask(Value):
    """A binary mask (height x width booleans) over the pixel grid of the image it was computed on."""

    type_name: ClassVar[str] = "Mask"
    public: ClassVar[frozenset[str]] = frozenset({"area", "box", "label", "score", "width", "height", "iou", "summary"})
    __slots__ = ("array", "label", "score", "_frozen")
    # field types (the planner's grammar reads them)
    label: str
    score: float | None

    def __init__(self, array, label: str = "", score: float | None = None):
        self.array = _readonly(array, bool)
        self.label = str(label)
        self.score = None if score is None else float(score)
        self._freeze()

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def area(self) -> int:
        return int(self.array.sum())

    @property
    def box(self) -> Box:
        import numpy as np

        ys, xs = np.nonzero(self.array)
        if not len(xs):
            raise ValueError("empty mask has no box")
        return Box(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1, self.label, self.score)

    def iou(self, other: "Mask") -> float:
        inter = int((self.array & other.array).sum())
        union = int((self.array | other.array).sum())
        return inter / union if union else 0.0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mask) and self.label == other.label and self.array.shape == other.array.shape and bool(
            (self.array == other.array).all())

    def __hash__(self) -> int:
        return hash((self.label, self.array.shape, self.array.tobytes()))

    def summary(self) -> str:
        return f"mask {self.label + ' ' if self.label else ''}{self.area} px of {self.width}x{self.height}"

    def to_json(self) -> dict[str, Any]:
        d = {"type": "Mask", "label": self.label, "score": self.score, "shape": list(self.array.shape), "area": self.area}
        if self.area:
            d["box"] = self.box.to_json()
        return d

    def draw(self, canvas):
        import numpy as np
        from PIL import Image as PILImage

        out = rgb_canvas(canvas)
        if out.size != (self.width, self.height):
            return out
        base = np.asarray(out).astype(np.float32)
        color = np.array(color_for(self.label or "mask"), dtype=np.float32)
        base[self.array] = 0.5 * base[self.array] + 0.5 * color
        return PILImage.fromarray(base.astype(np.uint8))


class DepthMap(Value):
    """Per-pixel depth over the pixel grid of the image it was computed on (map boxes with
    ``image.from_root`` before reading a crop's depth).

    ``convention`` states which way is near: ``"larger_is_nearer"`` (disparity-like, e.g. MiDaS /
    Depth-Anything relative output, stereo disparity) or ``"larger_is_farther"`` (metric depth in
    metres). Pixels without a value (e.g. unmatched in stereo) are NaN; statistics ignore them.
    ``source`` says, when known, which model or algorithm made the map and why it was chosen.
    """

    type_name: ClassVar[str] = "DepthMap"
    public: ClassVar[frozenset[str]] = frozenset(
        {"convention", "unit", "source", "width", "height", "at", "nearer", "min", "max", "summary", "mean_in"})
    __slots__ = ("array", "convention", "unit", "source", "_frozen")
    # field types (the planner's grammar reads them)
    convention: str
    unit: str
    source: str

    def __init__(self, array, convention: Literal["larger_is_nearer", "larger_is_farther"] = "larger_is_farther",
                 unit: str = "relative", source: str = ""):
        if convention not in ("larger_is_nearer", "larger_is_farther"):
            raise ValueError(f"depth convention must be 'larger_is_nearer' or 'larger_is_farther', got {convention!r}")
        self.array = _readonly(array, "float32")
        self.convention = convention
        self.unit = str(unit)
        self.source = str(source)
        self._freeze()

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    def at(self, x: float, y: float) -> float:
        xi = min(max(int(x), 0), self.width - 1)
        yi = min(max(int(y), 0), self.height - 1)
        return float(self.array[yi, xi])

    def mean_in(self, box: Box) -> float:
        x1, y1 = max(0, int(box.x1)), max(0, int(box.y1))
        x2, y2 = min(self.width, max(int(box.x2), x1 + 1)), min(self.height, max(int(box.y2), y1 + 1))
        import numpy as np

        part = self.array[y1:y2, x1:x2]
        return float(np.nanmean(part)) if np.isfinite(part).any() else float("nan")

    def nearer(self, a: Box, b: Box) -> bool:
        """True when box ``a`` is nearer to the camera than box ``b`` (median-free mean depth in each box)."""
        da, db = self.mean_in(a), self.mean_in(b)
        return da > db if self.convention == "larger_is_nearer" else da < db

    def min(self) -> float:
        import numpy as np

        return float(np.nanmin(self.array)) if np.isfinite(self.array).any() else float("nan")

    def max(self) -> float:
        import numpy as np

        return float(np.nanmax(self.array)) if np.isfinite(self.array).any() else float("nan")

    def __eq__(self, other: object) -> bool:
        import numpy as np

        return isinstance(other, DepthMap) and self.convention == other.convention and self.array.shape == other.array.shape \
            and bool(np.array_equal(self.array, other.array, equal_nan=True))

    def __hash__(self) -> int:
        return hash((self.convention, self.array.shape, self.array.tobytes()))

    def summary(self) -> str:
        text = f"depth {self.width}x{self.height} {self.unit} [{self.min():.3g}..{self.max():.3g}] ({self.convention})"
        return f"{text} by {self.source}" if self.source else text

    def to_json(self) -> dict[str, Any]:
        d = {"type": "DepthMap", "shape": list(self.array.shape), "convention": self.convention, "unit": self.unit,
             "min": self.min(), "max": self.max()}
        if self.source:
            d["source"] = self.source
        return d

    def draw(self, canvas=None):
        import numpy as np
        from PIL import Image as PILImage

        a = self.array
        known = np.isfinite(a)
        lo, hi = (self.min(), self.max()) if known.any() else (0.0, 1.0)
        norm = (np.where(known, a, lo) - lo) / ((hi - lo) or 1.0)
        if self.convention == "larger_is_farther":
            norm = 1.0 - norm  # bright = near in every picture
        norm[~known] = 0.0  # pixels without a value are black
        return PILImage.fromarray((norm * 255).astype(np.uint8)).convert("RGB")
