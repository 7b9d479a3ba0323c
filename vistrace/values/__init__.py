"""Immutable, typed values: the only objects (with plain data) that programs and tools exchange."""

from .answer import Answer
from .arrays import DepthMap, Mask
from .base import Value
from .boxes import Box, Detections
from .codec import fingerprint, summarize, to_jsonable
from .geometry import Mesh, MesherChoice, MeshFile, PointCloud, PointStats
from .image import Image
from .keypoints import COCO_KEYPOINTS, Keypoints
from .labels import Labels
from .text import TextLine, TextLines, normalize_vpeval

VALUE_TYPES: dict[str, type] = {
    cls.type_name: cls for cls in (Image, Box, Detections, Mask, DepthMap, TextLine, TextLines, Answer, Labels,
                                   Keypoints, PointCloud, PointStats, MesherChoice, Mesh, MeshFile)
}

__all__ = [
    "Answer", "Box", "COCO_KEYPOINTS", "DepthMap", "Detections", "Image", "Keypoints", "Labels", "Mask", "Mesh",
    "MeshFile", "MesherChoice", "PointCloud", "PointStats", "TextLine", "TextLines", "Value",
    "VALUE_TYPES", "fingerprint", "normalize_vpeval", "summarize", "to_jsonable",
]
