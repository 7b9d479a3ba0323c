"""Stereo depth with a classic algorithm (OpenCV semi-global block matching): real depth, no weights."""

from __future__ import annotations

from vistrace.errors import ToolArgumentError
from vistrace.values import DepthMap, Image

from ..registry import tool


@tool(category="geometry")
def stereo_depth(left: Image, right: Image, max_disparity: int = 64, block_size: int = 5) -> DepthMap:
    """Depth from a rectified stereo pair as disparity in pixels (larger = nearer), by OpenCV StereoSGBM.

    Pixels with no reliable match are NaN. The pair must be rectified (epipolar lines horizontal)
    and the same size; the map covers the left image's pixel grid.

    Args:
        left: The left image of the pair.
        right: The right image of the pair.
        max_disparity: The largest disparity searched, in pixels (rounded up to a multiple of 16).
        block_size: The matched block size in pixels (odd, 3..11).

    Returns:
        A DepthMap of disparities in pixels, convention 'larger_is_nearer'.
    """
    import cv2
    import numpy as np

    if left.size != right.size:
        raise ToolArgumentError(f"stereo_depth needs two images of the same size, got {left.width}x{left.height} "
                                f"and {right.width}x{right.height}")
    if not 1 <= max_disparity <= 1024:
        raise ToolArgumentError(f"max_disparity must be between 1 and 1024, got {max_disparity}")
    if block_size % 2 == 0 or not 3 <= block_size <= 11:
        raise ToolArgumentError(f"block_size must be odd and between 3 and 11, got {block_size}")
    n = ((max_disparity + 15) // 16) * 16
    # P1/P2 smoothness penalties as OpenCV's documentation recommends: 8*cn*bs^2 and 32*cn*bs^2
    matcher = cv2.StereoSGBM_create(minDisparity=0, numDisparities=n, blockSize=block_size,
                                    P1=8 * 3 * block_size ** 2, P2=32 * 3 * block_size ** 2, disp12MaxDiff=1,
                                    uniquenessRatio=10, speckleWindowSize=100, speckleRange=2,
                                    mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
    a = np.ascontiguousarray(left.pil.convert("RGB"))
    b = np.ascontiguousarray(right.pil.convert("RGB"))
    disp = matcher.compute(a, b).astype(np.float32) / 16.0  # fixed point with 4 fractional bits
    disp[disp < 0] = np.nan
    return DepthMap(disp, convention="larger_is_nearer", unit="disparity px")


TOOLS = (stereo_depth,)
