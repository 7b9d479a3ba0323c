"""``segment`` by OpenCV GrabCut seeded with a box: a real segmentation with no weights at all."""

from __future__ import annotations

from typing import Any

from vistrace.values import Box, Image, Mask

from ..backends import Availability, Backend


class GrabCutBackend(Backend):
    """Iterated graph cuts on colour models (Rother et al. 2004), initialised from the box."""

    tool = "segment"
    name = "grabcut"
    model = "OpenCV GrabCut (classic, no weights)"
    version = "opencv"
    priority = 0  # learned segmenters (SAM) registered later take precedence

    def __init__(self, iterations: int = 5):
        self.iterations = iterations

    def availability(self) -> Availability:
        try:
            import cv2
        except ImportError:
            return Availability(False, "OpenCV is not installed", "pip install 'opencv-python-headless<5'")
        type(self).version = f"opencv {cv2.__version__}"
        return Availability(True, "OpenCV GrabCut needs no weights")

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, "grabcut segments the object inside the box without model weights"

    def run(self, image: Image, box: Box) -> Mask:
        import cv2
        import numpy as np

        arr = np.ascontiguousarray(image.pil.convert("RGB"))[:, :, ::-1].copy()  # OpenCV wants BGR
        h, w = arr.shape[:2]
        x1, y1 = max(0, int(round(box.x1))), max(0, int(round(box.y1)))
        x2, y2 = min(w, int(round(box.x2))), min(h, int(round(box.y2)))
        mask = np.zeros((h, w), np.uint8)
        if x2 - x1 < 2 or y2 - y1 < 2:
            return Mask(mask.astype(bool), label=box.label, score=None)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(arr, mask, (x1, y1, x2 - x1, y2 - y1), bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
        fg = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        return Mask(fg, label=box.label or "object", score=None)


def backends() -> list[Backend]:
    return [GrabCutBackend()]
