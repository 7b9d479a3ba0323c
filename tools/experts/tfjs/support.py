"""What the TFJS-graph experts share: availability from the model registry, the cached graph,
letterboxing to a square input and non-maximum suppression."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vistrace.config import device
from vistrace.errors import BackendUnavailable

from ...backends import Availability
from ...model_cache import MODELS
from ... import models
from .. import files  # noqa: F401  (registers the model files)


def availability(name: str) -> Availability:
    """Ok when every file of model ``name`` is present with its pinned sha256; else why, and the fetch command."""
    spec = models.known_models().get(name)
    if spec is None:
        return Availability(False, f"model '{name}' is not registered", None)
    for member in spec.members:
        try:
            models.require(name, member)
        except BackendUnavailable as exc:
            return Availability(False, exc.message, f"vistrace models fetch {name}"
                                + (" --force" if "corrupt" in exc.message else ""))
    return Availability(True, f"{name}: model files present, sha256 verified")


def graph_path(name: str) -> Path:
    """The verified model.json of ``name`` (its .bin verified too); BackendUnavailable naming the file otherwise."""
    spec = models.known_models()[name]
    paths = [models.require(name, m) for m in spec.members]
    return paths[0]


def load_graph(name: str):
    """The executable graph of model ``name``, loaded once per process (and device) through the model cache."""
    from .graph import Graph

    path = graph_path(name)  # verify on every call (cheap after the first): a removed file is reported
    dev = device()
    return MODELS.get(f"tfjs:{name}:{dev}", lambda: Graph.load(path, dev), lambda g: g.nbytes)


@dataclass(frozen=True)
class Letterbox:
    """How an image was placed into a square model input: ``input = image * scale + (pad_x, pad_y)``."""

    scale: float
    pad_x: float
    pad_y: float
    size: int

    def to_image(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - self.pad_x) / self.scale, (y - self.pad_y) / self.scale


def letterbox(pil, size: int, fill: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio so the longer side is ``size``, centre on a square of ``fill``.

    Returns the HxWx3 float32 RGB array (0..255) and the placement to map model pixels back.
    """
    from PIL import Image as PILImage

    rgb = pil.convert("RGB") if pil.mode != "RGB" else pil
    w, h = rgb.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    resized = rgb.resize((nw, nh), PILImage.BILINEAR)
    canvas = np.full((size, size, 3), fill, dtype=np.float32)
    px, py = (size - nw) // 2, (size - nh) // 2
    canvas[py:py + nh, px:px + nw] = np.asarray(resized, dtype=np.float32)
    # the exact per-axis scale differs from ``scale`` by rounding; use the mean of the two
    return canvas, Letterbox((nw / w + nh / h) / 2, px, py, size)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, classes: np.ndarray | None = None) -> list[int]:
    """Greedy NMS over [x1, y1, x2, y2] rows, best score first (ties: lower index first).

    With ``classes``, a box only suppresses boxes of its own class. Returns the kept indices.
    """
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    kept: list[int] = []
    for i in order:
        ok = True
        for k in kept:
            if classes is not None and classes[k] != classes[i]:
                continue
            iw = min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0])
            ih = min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1])
            inter = max(iw, 0.0) * max(ih, 0.0)
            union = areas[i] + areas[k] - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            kept.append(i)
    return kept
