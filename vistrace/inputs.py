"""Reading program inputs from files: images, value JSON, and COCO-style ground-truth annotations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import InputError


def load_value_file(path: str | Path) -> Any:
    """Load a JSON file as a program input.

    Accepts a value's own JSON form (``{"type": "Detections", ...}`` as written by ``to_json``), a
    COCO-style annotation file (``{"annotations": [{"bbox": [x, y, w, h], "category": ...}]}``,
    read as ground-truth :class:`Detections`), or any other JSON (returned as plain data).
    """
    from .values import VALUE_TYPES, Box, Detections

    p = Path(path)
    if not p.is_file():
        raise InputError(f"input file not found: {p}", hint="write --arg NAME=@PATH with an existing JSON file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"input file {p} is not valid JSON: {exc}") from None
    if isinstance(data, dict) and data.get("type") in VALUE_TYPES and hasattr(VALUE_TYPES[data["type"]], "from_json"):
        try:
            return VALUE_TYPES[data["type"]].from_json(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"input file {p} is not a valid {data['type']}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        boxes = []
        for i, ann in enumerate(data["annotations"]):
            try:
                if "bbox_xyxy" in ann:
                    x1, y1, x2, y2 = ann["bbox_xyxy"]
                else:  # COCO stores [x, y, width, height]
                    x1, y1, w, h = ann["bbox"]
                    x2, y2 = x1 + w, y1 + h
                label = str(ann.get("category", ann.get("category_id", "")))
                boxes.append(Box(x1, y1, x2, y2, label=label, score=ann.get("score")))
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"annotation {i} of {p} has no usable box: {exc}",
                                 hint="expected 'bbox' [x, y, w, h] or 'bbox_xyxy' [x1, y1, x2, y2]") from None
        size = (data["width"], data["height"]) if "width" in data and "height" in data else None
        return Detections(boxes, query="ground truth", image_size=size)
    return data
