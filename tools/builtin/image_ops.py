"""Image operations: crop (VisProg), zoom (TextCoT) and the VisProg half-image crops.

Every box argument is in ROOT-image pixels (the coordinates every value uses). The image argument
may itself be a crop: the geometry is computed on the area that image covers and the result is cut
with :meth:`Image.crop`, so provenance composes and boxes found in the result map back to the root.
"""

from __future__ import annotations

from vistrace.errors import ToolArgumentError, ToolError
from vistrace.values import Box, Detections, Image

from ..registry import tool


def first_box(box: Box | Detections) -> Box | None:
    """The box to act on: a Box itself, the first box of Detections, or None for empty Detections."""
    if isinstance(box, Detections):
        return box[0] if len(box) else None
    return box


# pure geometry (no pixels) ---------------------------------------------------------------------

def visprog_expand_box(xyxy: tuple[float, float, float, float], size: tuple[int, int],
                       factor: float) -> tuple[int, int, int, int]:
    """VisProg CROP's box expansion (integer maths), in the pixel grid of an image of ``size``.

    Half-extents are ``int(factor * side / 2)`` around the truncated centre, clamped to
    ``[0, W]`` x ``[0, H]``.
    """
    width, height = size
    x1, y1, x2, y2 = xyxy
    half_w = int(factor * (x2 - x1) / 2)
    half_h = int(factor * (y2 - y1) / 2)
    cx = int((x1 + x2) / 2)
    cy = int((y1 + y2) / 2)
    return max(0, cx - half_w), max(0, cy - half_h), min(cx + half_w, width), min(cy + half_h, height)


def textcot_zoom_box(box: Box, region: Box, expand: float = 1.5, min_size: float = 448) -> Box | None:
    """TextCoT's zoom window for ``box`` inside ``region`` (both in root pixels).

    A square of side ``max(expand * longer side of box, min_size)`` centred on the box centre and
    shifted (not clipped) so that it lies inside ``region``. Returns None when the square is wider or
    taller than the region: the caller then keeps the whole image.
    """
    side = max(expand * max(box.width, box.height), float(min_size))
    if side > region.width or side > region.height:
        return None
    x1 = min(max(box.cx - side / 2, region.x1), region.x2 - side)
    y1 = min(max(box.cy - side / 2, region.y1), region.y2 - side)
    return Box(x1, y1, x1 + side, y1 + side)


def visprog_side_box(side: str, size: tuple[int, int], box: Box | None) -> tuple[int, int, int, int]:
    """VisProg's CROP_LEFTOF/RIGHTOF/ABOVE/BELOW window in the pixel grid of an image of ``size``.

    With a box the split runs through its truncated centre; without one (nothing detected) VisProg
    uses the image's left/right/top/bottom half. The ``w-1``/``h-1`` edges are VisProg's own.
    """
    w, h = size
    if box is None:
        cx, cy = int(w / 2), int(h / 2)
    else:
        cx, cy = int((box.x1 + box.x2) / 2), int((box.y1 + box.y2) / 2)
    windows = {
        "left": (0, 0, cx, h - 1),
        "right": (cx, 0, w - 1, h - 1),
        "above": (0, 0, w - 1, cy),
        "below": (0, cy, w - 1, h - 1),
    }
    return windows[side]


def _cut(image: Image, local: tuple[float, float, float, float], what: str) -> Image:
    """Cut a window given in ``image``'s own pixels; an empty window is a ToolError."""
    x1, y1, x2, y2 = local
    x1, y1 = max(0.0, x1), max(0.0, y1)
    x2, y2 = min(float(image.width), x2), min(float(image.height), y2)
    if x2 <= x1 or y2 <= y1:
        raise ToolError(f"{what}: the window [{local[0]:g}, {local[1]:g}, {local[2]:g}, {local[3]:g}] "
                        f"(in the image's pixels) does not overlap the {image.width}x{image.height} image")
    return image.crop(image.to_root(Box(x1, y1, x2, y2)))


# tools -----------------------------------------------------------------------------------------

@tool(category="image")
def crop(image: Image, box: Box | Detections, expand: float = 1.0) -> Image:
    """Cut the region of a box out of an image (VisProg CROP expands it 1.5x).

    The box is in root-image pixels; for Detections the first (best) box is used, and empty
    Detections return the image unchanged, as VisProg does. With ``expand`` other than 1 the box
    grows about its centre with VisProg's integer maths and is clamped to the image; with 1 the
    box itself is cut, clipped to the image. The result remembers where it lies in the root image.

    Args:
        image: The image (or a crop of one) to cut from.
        box: The region in root-image pixels: a Box, or Detections whose first box is used.
        expand: Growth factor of the box's width and height about its centre (1 = the box itself).

    Returns:
        The cropped image, with provenance back to the root image.
    """
    target = first_box(box)
    if target is None:
        return image
    if expand <= 0:
        raise ToolArgumentError(f"crop: expand must be > 0, got {expand}")
    local = image.from_root(target)
    if expand != 1.0:
        window = visprog_expand_box(local.xyxy, image.size, expand)
    else:
        window = local.xyxy
    return _cut(image, window, "crop")


@tool(category="image")
def zoom(image: Image, box: Box | Detections, expand: float = 1.5, min_size: int = 448) -> Image:
    """Zoom on a box the TextCoT way: a square window 1.5x the box's longer side, at least 448 px.

    The square (side ``max(expand * longer side, min_size)``, root pixels) is centred on the box
    and shifted, not clipped, to lie inside the area the image covers; when it is wider or taller
    than that area the whole image is returned. Empty Detections return the whole image.

    Args:
        image: The image (or a crop of one) to zoom into.
        box: The region of interest in root-image pixels: a Box, or Detections whose first box is used.
        expand: Side of the square as a multiple of the box's longer side.
        min_size: Smallest side of the square, in root pixels.

    Returns:
        The square crop (or the whole image), with provenance back to the root image.
    """
    target = first_box(box)
    if target is None:
        return image
    if expand <= 0 or min_size < 1:
        raise ToolArgumentError(f"zoom: expand must be > 0 and min_size >= 1, got expand={expand}, min_size={min_size}")
    window = textcot_zoom_box(target, image.region(), expand, min_size)
    if window is None:
        return image
    return image.crop(window)


def _side_crop(image: Image, box: Box | Detections, side: str) -> Image:
    target = first_box(box)
    local = None if target is None else image.from_root(target)
    return _cut(image, visprog_side_box(side, image.size, local), f"crop_{side}")


@tool(category="image")
def crop_left_of(image: Image, box: Box | Detections) -> Image:
    """Keep the part of the image left of a box's centre (VisProg CROP_LEFTOF).

    Without a box (empty Detections) the left half of the image is kept, as VisProg does.

    Args:
        image: The image (or a crop of one) to cut from.
        box: The reference box in root-image pixels, or Detections whose first box is used.

    Returns:
        The image strip left of the box centre.
    """
    return _side_crop(image, box, "left")


@tool(category="image")
def crop_right_of(image: Image, box: Box | Detections) -> Image:
    """Keep the part of the image right of a box's centre (VisProg CROP_RIGHTOF).

    Without a box (empty Detections) the right half of the image is kept, as VisProg does.

    Args:
        image: The image (or a crop of one) to cut from.
        box: The reference box in root-image pixels, or Detections whose first box is used.

    Returns:
        The image strip right of the box centre.
    """
    return _side_crop(image, box, "right")


@tool(category="image")
def crop_above(image: Image, box: Box | Detections) -> Image:
    """Keep the part of the image above a box's centre (VisProg CROP_ABOVE).

    Without a box (empty Detections) the top half of the image is kept, as VisProg does.

    Args:
        image: The image (or a crop of one) to cut from.
        box: The reference box in root-image pixels, or Detections whose first box is used.

    Returns:
        The image strip above the box centre.
    """
    return _side_crop(image, box, "above")


@tool(category="image")
def crop_below(image: Image, box: Box | Detections) -> Image:
    """Keep the part of the image below a box's centre (VisProg CROP_BELOW).

    Without a box (empty Detections) the bottom half of the image is kept, as VisProg does.

    Args:
        image: The image (or a crop of one) to cut from.
        box: The reference box in root-image pixels, or Detections whose first box is used.

    Returns:
        The image strip below the box centre.
    """
    return _side_crop(image, box, "below")


TOOLS = (crop, zoom, crop_left_of, crop_right_of, crop_above, crop_below)
