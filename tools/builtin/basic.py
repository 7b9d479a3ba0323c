"""Small general tools that need no model."""

from __future__ import annotations

from vistrace.values import Detections, TextLines

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


TOOLS = (count,)
