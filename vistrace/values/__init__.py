"""Immutable, typed values: the only objects (with plain data) that programs and tools exchange."""

from .answer import Answer
from .arrays import DepthMap, Mask
from .base import Value
from .boxes import Box, Detections
from .codec import fingerprint, summarize, to_jsonable
from .image import Image
from .keypoints import COCO_KEYPOINTS, Keypoints
from .labels import Labels
from .text import TextLine, TextLines, normalize_vpeval

VALUE_TYPES: dict[str, type] = {
    cls.type_name: cls for cls in (Image, Box, Detections, Mask, DepthMap, TextLine, TextLines, Answer, Labels,
                                   Keypoints)
}

__all__ = [
    "Answer", "Box", "COCO_KEYPOINTS", "DepthMap", "Detections", "Image", "Keypoints", "Labels", "Mask", "TextLine",
    "TextLines", "Value",
    "VALUE_TYPES", "fingerprint", "normalize_vpeval", "summarize", "to_jsonable",
]
