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
        if args.get("box") is None and args.get("mask") is None:
            return False, "grabcut needs a box or a rough mask to start from (a point alone is not enough)"
        return True, "grabcut segments the object inside the box without model weights"

    def run(self, image: Image, box: Box | None = None, point: tuple[float, float] | None = None,
            mask: Mask | None = None) -> Mask:
        import cv2
        import numpy as np

        arr = np.ascontiguousarray(image.pil.convert("RGB"))[:, :, ::-1].copy()  # OpenCV wants BGR
        h, w = arr.shape[:2]
        label = (box.label if box is not None else "") or (mask.label if mask is not None else "") or "object"
        state = np.full((h, w), cv2.GC_BGD, np.uint8)
        rect = None
        if box is not None:
            x1, y1 = max(0, int(round(box.x1))), max(0, int(round(box.y1)))
            x2, y2 = min(w, int(round(box.x2))), min(h, int(round(box.y2)))
            if x2 - x1 < 2 or y2 - y1 < 2:
                return Mask(np.zeros((h, w), bool), label=label, score=None)
            rect = (x1, y1, x2 - x1, y2 - y1)
            state[y1:y2, x1:x2] = cv2.GC_PR_FGD
        if mask is not None:
            # a rough mask: its pixels are probably foreground, the rest probably background
            inside = mask.array if rect is None else mask.array & (state == cv2.GC_PR_FGD)
            state[state == cv2.GC_PR_FGD] = cv2.GC_PR_BGD
            state[inside] = cv2.GC_PR_FGD
            if not inside.any():
                return Mask(np.zeros((h, w), bool), label=label, score=None)
        if point is not None:
            px, py = int(round(point[0])), int(round(point[1]))
            if 0 <= px < w and 0 <= py < h:
                state[max(0, py - 2):py + 3, max(0, px - 2):px + 3] = cv2.GC_FGD  # the user's click is foreground
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        if mask is None and point is None:
            state[:] = 0
            cv2.grabCut(arr, state, rect, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_RECT)
        else:
            if not (state == cv2.GC_BGD).any() and not (state == cv2.GC_PR_BGD).any():
                state[0, :] = cv2.GC_PR_BGD  # GrabCut needs some background to model
            cv2.grabCut(arr, state, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        fg = (state == cv2.GC_FGD) | (state == cv2.GC_PR_FGD)
        return Mask(fg, label=label, score=None)


def backends() -> list[Backend]:
    return [GrabCutBackend()]
