"""Image to 3-D (VisionGPT-3D): depth -> point cloud -> measured properties -> chosen mesher -> files, preview.

The tools are thin: the logic is in :mod:`.geometry_core` (intrinsics, back-projection, measurements,
rules; pure) and :mod:`.geometry_mesh` (grid triangulation, Open3D and trimesh adapters). Every
choice is recorded in the values the tools return (``DepthMap.source``, ``PointCloud.assumptions``,
``MesherChoice.reasons``, ``Mesh.params``), hence in the trace. See docs/image_to_3d.md.
"""

from __future__ import annotations

import math
from typing import Literal

from vistrace.errors import BackendUnavailable, ToolArgumentError, ToolError
from vistrace.values import (
    DepthMap,
    Image,
    Mesh,
    MesherChoice,
    MeshFile,
    PointCloud,
    PointStats,
)

from ..registry import ToolContext, tool
from . import geometry_core as core

MONOCULAR_FIX = ("configure a monocular depth model for the `depth` tool (DPT or Depth-Anything weights: "
                 "see docs/adapters.md, `vistrace doctor` shows what is missing), or give a rectified stereo pair "
                 "with right=... (stereo_depth needs no weights)")


def _depth_backend(ctx: ToolContext) -> tuple[str, str]:
    """(name, why) of the depth backend that would answer, or raises naming what to configure."""
    tool_ = ctx.registry.get("depth")
    refusals = []
    for b in sorted(tool_.backends, key=lambda b: -b.priority):
        avail = b.availability()
        if avail.ok:
            return b.name, avail.reason
        refusals.append(f"{b.name}: {avail.reason}")
    known = "; ".join(refusals) or "no depth backend is installed"
    raise BackendUnavailable(f"image to 3-D got one image and no monocular depth model is configured ({known})",
                             fix=MONOCULAR_FIX)


@tool(category="3d")
def depth_for(image: Image, right: Image | None = None, max_disparity: int = 64,
              ctx: ToolContext = None) -> DepthMap:
    """Depth for 3-D reconstruction, with the depth model chosen and the choice recorded.

    With a right image the pair is matched by stereo_depth (OpenCV SGBM: disparity in pixels, no
    weights). With one image the monocular `depth` tool answers through its configured adapter; when
    none is configured this fails naming what to configure (never a silent fallback).

    Args:
        image: The photograph; the left image of a rectified stereo pair.
        right: The right image of the pair, or None for a single photograph.
        max_disparity: For a pair: the largest disparity searched, in pixels.

    Returns:
        The depth map over ``image``'s pixel grid; its ``source`` says which model made it and why.
    """
    if right is not None:
        if right.size != image.size:
            raise ToolArgumentError(f"argument 'right' must be the same size as 'image' ({image.width}x{image.height}), "
                                    f"got {right.width}x{right.height}")
        dm = ctx.call("stereo_depth", left=image, right=right, max_disparity=max_disparity)
        why = (f"stereo_depth (OpenCV StereoSGBM, max_disparity={max_disparity}): a right image was given, so the "
               "rectified pair is matched (metric up to the baseline, no weights needed)")
    else:
        name, ready = _depth_backend(ctx)
        dm = ctx.call("depth", image=image)
        why = f"depth via backend '{name}' ({ready}): one image, so the configured monocular model answers"
    return DepthMap(dm.array, dm.convention, dm.unit, source=why)


@tool(category="3d")
def point_cloud(depth: DepthMap, image: Image, fov: float = core.DEFAULT_FOV_DEG, max_points: int = 60000,
                baseline: float = 1.0, disparity_offset: float = 0.0) -> PointCloud:
    """Back-project a depth map into a coloured, organised point cloud (camera frame: x right, y down, z forward).

    Intrinsics come from the image's EXIF focal length when present, else from ``fov``; a disparity
    map becomes depth by z = f*B/(d + disparity_offset) with the stated baseline. The map is sampled
    every k pixels so at most ``max_points`` points remain. Every assumption is listed in the cloud.

    Args:
        depth: The depth map (from depth_for, stereo_depth or depth).
        image: The image the map was computed on (same size), for the colours and its EXIF.
        fov: Horizontal field of view in degrees assumed without EXIF focal length (10..170).
        max_points: At most this many points (100..2000000); the grid step is chosen to fit.
        baseline: For a disparity map: the stereo baseline, in the unit the depth should have (> 0).
        disparity_offset: For a disparity map: the pair's disparity offset in pixels (doffs; >= 0).

    Returns:
        The point cloud, with ``intrinsics``, ``unit``, ``stride`` and ``assumptions``.
    """
    import numpy as np

    if not 10.0 <= fov <= 170.0:
        raise ToolArgumentError(f"argument 'fov' must be a horizontal field of view between 10 and 170 degrees, got {fov}")
    if not 100 <= max_points <= 2_000_000:
        raise ToolArgumentError(f"argument 'max_points' must be between 100 and 2000000, got {max_points}")
    if not (baseline > 0 and math.isfinite(baseline)):
        raise ToolArgumentError(f"argument 'baseline' must be a positive length, got {baseline}")
    if not (disparity_offset >= 0 and math.isfinite(disparity_offset)):
        raise ToolArgumentError(f"argument 'disparity_offset' must be >= 0 pixels, got {disparity_offset}")
    if (depth.width, depth.height) != image.size:
        raise ToolArgumentError(f"argument 'image' must be the {depth.width}x{depth.height} image the depth map was "
                                f"computed on, got {image.width}x{image.height}")
    root_w, root_h = image.root_size
    root_k, how = core.intrinsics_for(core.exif_tags(image.pil), root_w, root_h, fov)
    k = core.crop_intrinsics(root_k, image.offset, image.scale) if image.is_crop else root_k
    z, unit, conversion = core.depth_to_z(depth.array, depth.convention, depth.unit, k[0], baseline, disparity_offset)
    valid = int(np.isfinite(z).sum())
    if valid == 0:
        raise ToolError("the depth map has no valid pixel: nothing to back-project",
                        hint="check the stereo pair is rectified and max_disparity covers its disparities")
    stride = core.choose_stride(valid, max_points)
    points, pixels, grid, rows, cols, dropped = core.backproject(z, k, stride)
    colors = np.asarray(image.pil.convert("RGB"))[rows, cols]
    assumptions = [how + (" (of the root image, mapped into the crop)" if image.is_crop else ""), conversion,
                   f"{valid} of {z.size} pixels have depth; sampled every {stride} px -> {len(points)} points"
                   + (f" (max_points {max_points})" if stride > 1 else "")]
    if dropped:
        assumptions.append(f"{dropped} sampled points farther than {core.MAX_DEPTH_RATIO:g}x the near (1st percentile) "
                           "depth dropped as unreliable (tiny disparities)")
    if depth.source:
        assumptions.insert(0, f"depth by {depth.source}")
    return PointCloud(points, colors, pixels=pixels, grid_shape=grid, stride=stride, intrinsics=k, unit=unit,
                      assumptions=assumptions)


def _measure(points: PointCloud) -> PointStats:
    if points.count < core.NEIGHBOURS + 1:
        raise ToolArgumentError(f"argument 'points' needs at least {core.NEIGHBOURS + 1} points to be measured, "
                                f"got {points.count}")
    cells = points.grid_shape[0] * points.grid_shape[1] if points.grid_shape else None
    return PointStats(**core.measure(points.points, grid_cells=cells))


@tool(category="3d")
def measure_points(points: PointCloud) -> PointStats:
    """Measure what the meshing rules read: density uniformity, noise, curvature, planarity, holes and borders.

    Neighbourhoods are the 16 nearest points; statistics are medians over a fixed-seed sample of
    4000 points (all when fewer), so the same cloud always gives the same numbers.

    Args:
        points: The point cloud to measure (at least 17 points).

    Returns:
        The measurements (spacing, density_cv, noise, curvature, planarity, boundary_fraction, missing_fraction).
    """
    return _measure(points)


@tool(category="3d")
def choose_mesher(stats: PointStats) -> MesherChoice:
    """Choose the meshing algorithm (grid, poisson, ball_pivoting, alpha_shape) from measured properties.

    Ordered rules over the measurements (docs/image_to_3d.md); the first that holds decides, and the
    reasons list every rule tried with its numbers.

    Args:
        stats: The measurements from measure_points.

    Returns:
        The chosen method, the deciding rule and the reasons.
    """
    method, rule, reasons = core.choose_method(stats.as_dict())
    return MesherChoice(method, rule, reasons)


@tool(category="3d")
def mesh(points: PointCloud, method: Literal["auto", "grid", "poisson", "ball_pivoting", "alpha_shape"] = "auto",
         stats: PointStats | None = None) -> Mesh:
    """Triangulate a point cloud: depth-grid triangulation, Poisson, ball pivoting or alpha shape.

    'auto' measures the cloud (unless ``stats`` are given) and applies choose_mesher's rules. The
    parameters (ball radii, alpha, octree depth, jump threshold) follow from the measured spacing and
    are recorded in the mesh's ``params``, with the reasons when the method was chosen here.

    Args:
        points: The point cloud (organised clouds can use 'grid' over their pixel grid).
        method: 'auto', 'grid', 'poisson', 'ball_pivoting' or 'alpha_shape'.
        stats: Measurements of ``points`` from measure_points (measured here when None).

    Returns:
        The mesh with its method, parameters and stats (vertices, faces, watertight).
    """
    from .geometry_mesh import MESHERS

    if stats is not None and stats.count != points.count:
        raise ToolArgumentError(f"argument 'stats' measures {stats.count} points but 'points' has {points.count}: "
                                "give the measurements of this cloud")
    measured = stats if stats is not None else _measure(points)
    chosen: dict = {}
    if method == "auto":
        method, rule, reasons = core.choose_method(measured.as_dict())
        chosen = {"chosen_by": rule, "reasons": reasons}
    v, f, colors, params = MESHERS[method](points, measured.as_dict())
    if len(f) == 0:
        raise ToolError(f"{method} produced no triangles on this cloud ({points.count} points)",
                        hint="try another method, or mesh(points) to let the rules choose")
    return Mesh(v, f, colors, method=method, params={**params, **chosen})


@tool(category="3d")
def export_mesh(mesh: Mesh, format: Literal["ply", "obj", "glb"] = "glb", name: str = "mesh") -> MeshFile:
    """Export a mesh as PLY, OBJ or GLB (trimesh); the run folder saves it as exports/NAME.FORMAT.

    Files use the glTF axes (x right, y up, z towards the viewer), so viewers show the scene upright.

    Args:
        mesh: The mesh to export.
        format: 'ply' (binary), 'obj' or 'glb'.
        name: The file's base name (letters, digits, '_', '-', '.').

    Returns:
        The file (bytes, format, name).
    """
    from .geometry_mesh import export_bytes

    if not name or not all(ch.isalnum() or ch in "_-." for ch in name) or name.startswith("."):
        raise ToolArgumentError(f"argument 'name' must be a plain file name (letters, digits, '_', '-', '.'), got {name!r}")
    return MeshFile(export_bytes(mesh.vertices, mesh.faces, mesh.colors, format), format, name)


@tool(category="3d")
def render_mesh(mesh: Mesh, size: int = 640, azimuth: float = 25.0, elevation: float = 15.0) -> Image:
    """Render a preview picture of a mesh (flat-shaded, z-buffered, orthographic; no GPU needed).

    Args:
        mesh: The mesh to show.
        size: The picture's long side in pixels (64..4096).
        azimuth: Turn about the vertical axis, degrees (-180..180; 0 = as the camera saw it).
        elevation: Tilt to look down on the scene, degrees (-90..90).

    Returns:
        The preview image.
    """
    from vistrace.values.raster import render_mesh as raster

    if not 64 <= size <= 4096:
        raise ToolArgumentError(f"argument 'size' must be between 64 and 4096 pixels, got {size}")
    if not -180.0 <= azimuth <= 180.0:
        raise ToolArgumentError(f"argument 'azimuth' must be between -180 and 180 degrees, got {azimuth}")
    if not -90.0 <= elevation <= 90.0:
        raise ToolArgumentError(f"argument 'elevation' must be between -90 and 90 degrees, got {elevation}")
    pil = raster(mesh.vertices, mesh.faces, mesh.colors, size=size, azimuth=azimuth, elevation=elevation)
    return Image(pil, source=f"preview of the {mesh.method} mesh")


TOOLS = (depth_for, point_cloud, measure_points, choose_mesher, mesh, export_mesh, render_mesh)
