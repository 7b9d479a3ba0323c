"""``detect_faces`` by BlazeFace (the short-range front-camera model), the TFJS graph from @vladmandic/human 3.3.6.

Facts about the graph (``models/blazeface.json``) and human's use of it (``src/face/blazeface.ts``,
``src/face/facemeshutil.ts``): input ``input`` is 1x256x256x3 RGB scaled to -1..1 (``x/127.5 - 1``).
The four outputs are, by size, the logits and the regressions of two anchor sets: 512 anchors
(a 16x16 grid, stride 16, 2 anchors per cell) then 384 anchors (an 8x8 grid, stride 32, 6 per cell),
each anchor at its cell centre ``stride * (i + 0.5)`` in input pixels. A regression row is
``[dx, dy, w, h, 6 landmarks (x, y)]`` in input pixels: the box centre is ``anchor + (dx, dy)``,
its size ``(w, h)``; the score is ``sigmoid(logit)``.

We letterbox (keep aspect, centre on black) so faces keep their shape, decode every anchor in our
code, keep scores >= ``MIN_SCORE`` and suppress overlaps with NMS at ``NMS_IOU``. The box is the
model's tight face box (human enlarges it 1.4x for its face-mesh crop; we do not).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vistrace.values import Box, Detections, Image

from ..backends import Availability, Backend
from . import files  # noqa: F401  (registers the model files)
from .tfjs import support

INPUT = "input"
SIZE = 256
# the defaults of the TF.js blazeface model package; measured: the astronaut's face scores 0.885, the best
# non-face anchors of the development images 0.09-0.67 (a dog's face 0.67), see docs/benchmarks.md
MIN_SCORE = 0.75
NMS_IOU = 0.3
ANCHOR_SPEC = ((16, 2), (32, 6))  # (stride, anchors per cell), in output order: 512 anchors, then 384


def anchors(size: int = SIZE) -> np.ndarray:
    """Anchor centres [N, 2] (x, y) in input pixels, in the model's output order."""
    out = []
    for stride, per_cell in ANCHOR_SPEC:
        cells = (size + stride - 1) // stride
        for gy in range(cells):
            for gx in range(cells):
                out += [(stride * (gx + 0.5), stride * (gy + 0.5))] * per_cell
    return np.asarray(out, dtype=np.float64)


def decode(raw: np.ndarray, logits: np.ndarray, size: int = SIZE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes [N,4] xyxy, scores [N], landmarks [N,6,2]) in input pixels from the concatenated outputs."""
    a = anchors(size)
    raw = raw.astype(np.float64)
    centre = raw[:, 0:2] + a
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    marks = raw[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64).reshape(-1), -80, 80)))
    return boxes, scores, marks


class BlazeFaceBackend(Backend):
    """Face detection, offline, on CPU or CUDA, through our TFJS graph executor."""

    tool = "detect_faces"
    name = "blazeface"
    model = "blazeface (@vladmandic/human 3.3.6)"
    version = "3.3.6"

    def availability(self) -> Availability:
        return support.availability("blazeface")

    def raw(self, image: Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All anchors decoded into the image's pixels: (boxes [896,4], scores [896], landmarks [896,6,2])."""
        graph = support.load_graph("blazeface")
        arr, place = support.letterbox(image.pil, SIZE)
        x = arr / 127.5 - 1.0
        outs = graph.run({INPUT: x[None]}, graph.model.outputs)
        by_shape = {o.shape[1:]: o[0] for o in outs}  # (512,1) (512,16) (384,1) (384,16)
        logits = np.concatenate([by_shape[(512, 1)], by_shape[(384, 1)]])
        regs = np.concatenate([by_shape[(512, 16)], by_shape[(384, 16)]])
        boxes, scores, marks = decode(regs, logits)
        boxes[:, 0], boxes[:, 1] = place.to_image(boxes[:, 0], boxes[:, 1])
        boxes[:, 2], boxes[:, 3] = place.to_image(boxes[:, 2], boxes[:, 3])
        marks[..., 0], marks[..., 1] = place.to_image(marks[..., 0], marks[..., 1])
        return boxes, scores, marks

    def run(self, image: Image, **_: Any) -> Detections:
        boxes, scores, _ = self.raw(image)
        keep = scores >= MIN_SCORE
        boxes, scores = boxes[keep], scores[keep]
        w, h = image.size
        found = [Box(*np.clip(boxes[i], 0, [w, h, w, h]).tolist(), label="face", score=float(scores[i]))
                 for i in support.nms(boxes, scores, NMS_IOU)]
        return Detections(found, query="face", image_size=image.size)


def backends() -> list[Backend]:
    return [BlazeFaceBackend()]
