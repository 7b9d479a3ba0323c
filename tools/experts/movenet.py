"""``pose`` by MoveNet SinglePose Lightning, the TFJS graph from @vladmandic/human 3.3.6.

Facts about the graph (``models/movenet-lightning.json``) and human's use of it
(``src/body/movenet.ts``, ``movenetfix.ts``): input ``input`` is 1x192x192x3 **int32** RGB 0..255
(the image padded to a square, centred, then resized bilinearly); output ``Identity`` is
[1, 1, 17, 3]: per COCO keypoint ``(y, x, score)`` with y, x normalised to the padded square.

We letterbox the same way (centred on black), map each point back to the image's pixels, and return
all 17 points with their scores (a caller decides what is visible: ``Keypoints.visible(0.3)``; human
uses 0.3 too). The pose score is the mean keypoint score. Human's left/right swap heuristics are
not applied: the points are the model's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vistrace.values import Image, Keypoints
from vistrace.values.keypoints import COCO_KEYPOINTS

from ..backends import Availability, Backend
from . import files  # noqa: F401  (registers the model files)
from .tfjs import support

INPUT = "input"
OUTPUT = "Identity"
SIZE = 192


class MoveNetBackend(Backend):
    """Single-person 2D pose (17 COCO keypoints), offline, on CPU or CUDA, through our TFJS executor."""

    tool = "pose"
    name = "movenet"
    model = "movenet-lightning (@vladmandic/human 3.3.6)"
    version = "3.3.6"

    def availability(self) -> Availability:
        return support.availability("movenet")

    def raw(self, image: Image) -> np.ndarray:
        """[17, 3] rows of (x, y, score) in the image's pixels, in COCO keypoint order."""
        graph = support.load_graph("movenet")
        arr, place = support.letterbox(image.pil, SIZE)
        (out,) = graph.run({INPUT: arr.astype(np.int32)[None]}, [OUTPUT])
        yxs = out.reshape(17, 3).astype(np.float64)
        x, y = place.to_image(yxs[:, 1] * SIZE, yxs[:, 0] * SIZE)
        return np.stack([x, y, yxs[:, 2]], axis=1)

    def run(self, image: Image, **_: Any) -> Keypoints:
        pts = self.raw(image)
        points = {name: (float(x), float(y), float(s)) for name, (x, y, s) in zip(COCO_KEYPOINTS, pts)}
        return Keypoints(points, score=float(pts[:, 2].mean()))


def backends() -> list[Backend]:
    return [MoveNetBackend()]
