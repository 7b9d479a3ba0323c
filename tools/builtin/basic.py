"""Small general tools that need no model."""

from __future__ import annotations

from vistrace.errors import ToolArgumentError
from vistrace.values import Box, Detections, TextLines

from ..registry import tool


@tool(category="basic")
def count(objects: Detections | TextLines | list) -> int:
    """Count detections, text lines or list items (VisProg COUNT).

    Args:
        objects: Detections, TextLines or a list to count.

    Returns:
        How many there are.
    """
    return len(objects)


@tool(category="basic")
def box(x1: float, y1: float, x2: float, y2: float, label: str = "") -> Box:
    """Make a box from root-image pixel coordinates (x1, y1) top-left and (x2, y2) bottom-right.

    Args:
        x1: left edge in pixels.
        y1: top edge in pixels.
        x2: right edge in pixels (at least x1).
        y2: bottom edge in pixels (at least y1).
        label: an optional name for the box.

    Returns:
        The Box.
    """
    try:
        return Box(x1, y1, x2, y2, label=label)
    except ValueError as exc:
        raise ToolArgumentError(str(exc)) from None


@tool(category="basic")
def detections(boxes: list[Box], query: str = "") -> Detections:
    """Collect boxes into Detections, e.g. a layout for generate or layout_sketch.

    Args:
        boxes: The boxes, e.g. [box(10, 10, 200, 200, 'cat'), box(220, 40, 500, 300, 'dog')].
        query: An optional name for the set.

    Returns:
        The Detections, in the order given.
    """
    return Detections(boxes, query=query or ",".join(dict.fromkeys(b.label for b in boxes if b.label)))


TOOLS = (count, box, detections)
