"""Image to 3-D, the pure part: intrinsics, depth to points, measured properties, the meshing rules.

Everything here is a function of numbers and arrays (numpy; scipy's KD-tree for neighbours), so it
is tested on synthetic clouds without Open3D. The thresholds are justified in docs/image_to_3d.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_FOV_DEG = 60.0            # horizontal field of view assumed without EXIF (a normal lens)
FULL_FRAME_DIAGONAL_MM = 43.2666  # 36 x 24 mm: the reference of EXIF's 35 mm-equivalent focal length
MAX_DEPTH_RATIO = 10.0            # points farther than 10x the near (1st percentile) depth are dropped
NEIGHBOURS = 16                   # neighbourhood of the local fits
DENSITY_NEIGHBOUR = 8             # density is read from the distance to the 8th neighbour
SAMPLE = 4000                     # points measured (a fixed-seed sample; all when fewer)
RANSAC_ITERATIONS = 200
BOUNDARY_GAP = 5 * math.pi / 6    # an angular gap over 150 degrees among the 16 neighbours: a border point

# EXIF tags (Exif 2.3)
TAG_FOCAL_LENGTH = 0x920A
TAG_FOCAL_35MM = 0xA405
TAG_FOCAL_PLANE_XRES = 0xA20E
TAG_FOCAL_PLANE_UNIT = 0xA210
TAG_PIXEL_X_DIMENSION = 0xA002
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # inch, cm, mm, micrometre


# --- intrinsics -------------------------------------------------------------------------------

def exif_tags(pil) -> dict[int, float]:
    """The EXIF numbers that fix the focal length, from a PIL image (base IFD and Exif sub-IFD)."""
    try:
        exif = pil.getexif()
    except Exception:  # noqa: BLE001 - unreadable EXIF counts as none (and the default is stated)
        return {}
    merged: dict[int, Any] = dict(exif)
    try:
        sub = exif.get_ifd(0x8769)
    except Exception:  # noqa: BLE001 - a broken Exif sub-IFD counts as absent
        sub = {}
    merged.update(sub)
    out = {}
    for tag in (TAG_FOCAL_LENGTH, TAG_FOCAL_35MM, TAG_FOCAL_PLANE_XRES, TAG_FOCAL_PLANE_UNIT, TAG_PIXEL_X_DIMENSION):
        try:
            value = float(merged[tag])
        except (KeyError, TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(value) and value > 0:
            out[tag] = value
    return out


def intrinsics_for(tags: Mapping[int, float], width: int, height: int,
                   fov_deg: float = DEFAULT_FOV_DEG) -> tuple[tuple[float, float, float, float], str]:
    """Pinhole intrinsics (fx, fy, cx, cy) in pixels of a ``width`` x ``height`` image and how they were found.

    In order: EXIF's 35 mm-equivalent focal length (scaled by the image diagonal over the 43.27 mm
    full-frame diagonal); EXIF's focal length in mm with the focal-plane resolution (scaled when the
    image was resized from the sensor's width); else the stated horizontal field of view. Square
    pixels and a principal point at the image centre are assumed in every case.
    """
    cx, cy = width / 2.0, height / 2.0
    f35 = tags.get(TAG_FOCAL_35MM)
    if f35:
        fx = f35 * math.hypot(width, height) / FULL_FRAME_DIAGONAL_MM
        return (fx, fx, cx, cy), (f"EXIF 35 mm-equivalent focal length {f35:g} mm -> fx = {fx:.1f} px "
                                  "(square pixels, centred principal point)")
    f_mm, xres, unit = tags.get(TAG_FOCAL_LENGTH), tags.get(TAG_FOCAL_PLANE_XRES), tags.get(TAG_FOCAL_PLANE_UNIT, 2)
    if f_mm and xres and int(unit) in _UNIT_MM:
        sensor_width = tags.get(TAG_PIXEL_X_DIMENSION) or width
        fx = f_mm * xres / _UNIT_MM[int(unit)] * (width / sensor_width)
        return (fx, fx, cx, cy), (f"EXIF focal length {f_mm:g} mm at {xres / _UNIT_MM[int(unit)]:.1f} px/mm "
                                  f"-> fx = {fx:.1f} px (square pixels, centred principal point)")
    fx = (width / 2.0) / math.tan(math.radians(fov_deg) / 2)
    why = "no EXIF focal length" if not (f_mm or f35) else "EXIF focal length without a sensor size"
    return (fx, fx, cx, cy), (f"{why}: assumed horizontal field of view {fov_deg:g} deg -> fx = {fx:.1f} px "
                              "(square pixels, centred principal point)")


def crop_intrinsics(root: tuple[float, float, float, float], offset, scale) -> tuple[float, float, float, float]:
    """Intrinsics of a crop (``offset`` in root pixels, ``scale`` its pixels per root pixel)."""
    fx, fy, cx, cy = root
    return fx * scale[0], fy * scale[1], (cx - offset[0]) * scale[0], (cy - offset[1]) * scale[1]


# --- depth to points --------------------------------------------------------------------------

def depth_to_z(values, convention: str, unit: str, fx: float, baseline: float = 1.0,
               disparity_offset: float = 0.0):
    """Camera depth z (NaN where unknown) from a depth map's values, the unit of z and the assumption made.

    - ``larger_is_farther``: the values are depth already.
    - ``larger_is_nearer`` in disparity pixels (stereo): z = fx * baseline / (d + disparity_offset).
    - ``larger_is_nearer`` otherwise (relative inverse depth, unknown scale and shift): z = max(d) / d.
    """
    import numpy as np

    d = np.asarray(values, dtype=np.float64)
    if convention == "larger_is_farther":
        z = np.where(np.isfinite(d) & (d > 0), d, np.nan)
        return z, unit or "relative", f"depth values used as camera z ({unit or 'relative'})"
    if "disparity" in unit:
        shifted = d + disparity_offset
        z = np.where(np.isfinite(shifted) & (shifted > 0), fx * baseline / np.where(shifted > 0, shifted, 1.0), np.nan)
        return z, "baselines" if baseline == 1.0 else "baseline units", (
            f"disparity -> depth z = f*B/(d + doffs) with f = {fx:.1f} px, B = {baseline:g} "
            f"(stated baseline; z is in the baseline's unit), doffs = {disparity_offset:g} px")
    top = np.nanmax(d) if np.isfinite(d).any() else 1.0
    z = np.where(np.isfinite(d) & (d > 0), top / np.where(d > 0, d, 1.0), np.nan)
    return z, "relative", f"relative inverse depth ({unit}) -> z = max(d)/d (unknown scale and shift)"



def choose_stride(valid: int, max_points: int) -> int:
    """The grid step that keeps at most ``max_points`` of ``valid`` pixels (1 when they all fit)."""
    return max(1, math.ceil(math.sqrt(valid / max_points))) if valid > max_points else 1


def backproject(z, intrinsics, stride: int = 1, max_depth_ratio: float = MAX_DEPTH_RATIO):
    """Points (N x 3 float32, camera frame) from a depth grid sampled every ``stride`` pixels.

    Returns (points, pixels (N x 2: row, column in the sampled grid), grid shape, pixel rows and
    columns in the full map, number of far points dropped). Pixel centres are at (u + 0.5, v + 0.5).
    """
    import numpy as np

    fx, fy, cx, cy = intrinsics
    zs = np.asarray(z, dtype=np.float64)[::stride, ::stride]
    valid = np.isfinite(zs) & (zs > 0)
    dropped = 0
    if valid.any():
        near = np.percentile(zs[valid], 1)
        far = valid & (zs > near * max_depth_ratio)
        dropped = int(far.sum())
        valid &= ~far
    rows, cols = np.nonzero(valid)
    v = rows * stride + 0.5
    u = cols * stride + 0.5
    depth = zs[rows, cols]
    points = np.stack([(u - cx) / fx * depth, (v - cy) / fy * depth, depth], axis=1).astype(np.float32)
    pixels = np.stack([rows, cols], axis=1).astype(np.int32)
    return points, pixels, zs.shape, rows * stride, cols * stride, dropped


# --- measurements -----------------------------------------------------------------------------

def _local_frames(points, neighbours):
    """Per sampled point: the neighbourhood in its PCA frame (S, k, 3), last axis = the normal direction."""
    import numpy as np

    nb = points[neighbours]                                 # (S, k, 3)
    centred = nb - nb.mean(axis=1, keepdims=True)
    cov = np.einsum("ski,skj->sij", centred, centred) / nb.shape[1]
    _, vecs = np.linalg.eigh(cov)                           # ascending: vecs[..., 0] is the normal
    frame = vecs[:, :, ::-1]                                # columns: tangent u, tangent v, normal
    return np.einsum("ski,sij->skj", centred, frame)


def _quadric_fit(local):
    """Fit w = a u^2 + b uv + c v^2 + d u + e v + f per neighbourhood: (residual rms, |mean curvature|)."""
    import numpy as np

    u, v, w = local[..., 0], local[..., 1], local[..., 2]
    design = np.stack([u * u, u * v, v * v, u, v, np.ones_like(u)], axis=-1)   # (S, k, 6)
    ata = np.einsum("ski,skj->sij", design, design) + 1e-12 * np.eye(6)
    atb = np.einsum("ski,sk->si", design, w)
    coef = np.linalg.solve(ata, atb[..., None])[..., 0]
    resid = w - np.einsum("ski,si->sk", design, coef)
    k = local.shape[1]
    rms = np.sqrt((resid ** 2).sum(axis=1) / max(1, k - 6))  # unbiased for the 6 fitted coefficients
    return rms, np.abs(coef[:, 0] + coef[:, 2])


def _boundary(local) -> Any:
    """Whether each neighbourhood leaves an angular gap over BOUNDARY_GAP around its centre point."""
    import numpy as np

    ang = np.sort(np.arctan2(local[:, 1:, 1] - local[:, :1, 1], local[:, 1:, 0] - local[:, :1, 0]), axis=1)
    gaps = np.diff(ang, axis=1)
    wrap = ang[:, 0] + 2 * np.pi - ang[:, -1]
    return np.maximum(gaps.max(axis=1) if gaps.shape[1] else 0.0, wrap) > BOUNDARY_GAP


def _plane_inliers(points, tolerance: float, rng, iterations: int = RANSAC_ITERATIONS) -> float:
    """The largest share of ``points`` within ``tolerance`` of one plane (RANSAC, fixed seed)."""
    import numpy as np

    n = len(points)
    if n < 3:
        return 1.0
    best = 0
    picks = rng.integers(0, n, size=(iterations, 3))
    a, b, c = points[picks[:, 0]], points[picks[:, 1]], points[picks[:, 2]]
    normals = np.cross(b - a, c - a)
    lengths = np.linalg.norm(normals, axis=1)
    ok = lengths > 1e-12
    normals, a = normals[ok] / lengths[ok, None], a[ok]
    for start in range(0, len(normals), 50):  # 50 candidate planes against all points at a time
        dist = np.abs(np.einsum("pnk,pk->pn", points[None, :, :] - a[start:start + 50, None, :],
                                normals[start:start + 50]))
        best = max(best, int((dist <= tolerance).sum(axis=1).max()))
    return best / n


def measure(points, *, grid_cells: int | None = None, sample: int = SAMPLE, seed: int = 0) -> dict[str, Any]:
    """The measured properties of a cloud (the fields of :class:`~vistrace.values.PointStats`).

    ``grid_cells``: the size of the grid an organised cloud was sampled from (for ``missing_fraction``).
    Neighbourhoods come from all points; the statistics are over a fixed-seed sample of ``sample`` points.
    """
    import numpy as np
    from scipy.spatial import cKDTree

    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    if n < NEIGHBOURS + 1:
        raise ValueError(f"at least {NEIGHBOURS + 1} points are needed to measure a cloud, got {n}")
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=sample, replace=False)) if n > sample else np.arange(n)
    tree = cKDTree(p)
    dist, nbrs = tree.query(p[idx], k=NEIGHBOURS + 1)         # includes the point itself first
    nn = dist[:, 1]
    spacing = float(np.median(nn))
    rk = dist[:, DENSITY_NEIGHBOUR]
    density_cv = float(rk.std() / rk.mean()) if rk.mean() > 0 else 0.0
    local = _local_frames(p, nbrs)
    rms, mean_curv = _quadric_fit(local)
    noise_abs = float(np.median(rms))
    noise = noise_abs / spacing if spacing > 0 else 0.0
    curvature = float(np.median(mean_curv * dist[:, -1]))
    planarity = _plane_inliers(p[idx], max(2 * spacing, 3 * noise_abs), rng)
    boundary = float(_boundary(local).mean())
    extent = float(np.linalg.norm(p.max(axis=0) - p.min(axis=0)))
    missing = None if grid_cells is None else float(max(0.0, 1 - n / grid_cells))
    return {"count": n, "sample": len(idx), "organized": grid_cells is not None, "extent": extent,
            "spacing": spacing, "neighbour_radius": float(np.median(rk)), "density_cv": density_cv, "noise": noise,
            "curvature": curvature, "planarity": float(planarity), "boundary_fraction": boundary,
            "missing_fraction": missing}


# --- the meshing rules ------------------------------------------------------------------------

@dataclass(frozen=True)
class MeshRules:
    """The thresholds of :func:`choose_method` (see docs/image_to_3d.md for why these values)."""

    grid_max_missing: float = 0.5     # an organised grid with at most half its cells empty is triangulated as is
    noisy: float = 0.5                # noise >= half the local spacing: interpolating methods would keep it
    planar: float = 0.9               # >= 90 % of the points on one plane: a height field over that plane
    sparse_count: int = 3000          # fewer points: too few for normals and an octree, use alpha shapes
    closed_max_border: float = 1.0   # < 1 x sqrt(N) border points: closed (an open patch has ~3-4 x sqrt(N))
    uniform_cv: float = 0.35          # density cv <= 0.35: even enough for one set of ball radii


DEFAULT_RULES = MeshRules()


def border_per_sqrt(boundary_fraction: float, count: int) -> float:
    """Border points over sqrt(N): ~3-4 for an open patch of N even samples (its perimeter in spacings), ~0 closed."""
    return boundary_fraction * math.sqrt(max(count, 1))


def choose_method(stats: Mapping[str, Any], rules: MeshRules = DEFAULT_RULES) -> tuple[str, str, list[str]]:
    """The meshing algorithm for measured properties: (method, rule name, reasons with the numbers).

    Rules are tried in order and the first that holds decides; each rule tried adds a reason, so the
    trace shows why the earlier ones did not apply.
    """
    reasons: list[str] = []
    missing = stats.get("missing_fraction")
    noise, count, planarity = stats["noise"], stats["count"], stats["planarity"]
    boundary, cv = stats["boundary_fraction"], stats["density_cv"]

    if stats.get("organized") and missing is not None:
        if missing <= rules.grid_max_missing and noise < rules.noisy:
            reasons.append(f"organised depth grid with {missing:.1%} cells missing <= {rules.grid_max_missing:.0%} "
                           f"and noise {noise:.2f} < {rules.noisy:g}: triangulate the pixel grid (keeps the "
                           "measured samples and their connectivity, cut at depth jumps)")
            return "grid", "organised-grid", reasons
        reasons.append(f"organised grid not used as is: {missing:.1%} cells missing (limit "
                       f"{rules.grid_max_missing:.0%}), noise {noise:.2f} (limit {rules.noisy:g})")
    else:
        reasons.append("not an organised depth grid")
    if planarity >= rules.planar:
        reasons.append(f"planarity {planarity:.0%} >= {rules.planar:.0%}: a height field over the dominant plane, "
                       "triangulated in that plane (Poisson would bulge an open flat patch)")
        return "grid", "planar", reasons
    reasons.append(f"planarity {planarity:.0%} < {rules.planar:.0%}")
    if count < rules.sparse_count:
        reasons.append(f"{count} points < {rules.sparse_count}: too sparse for reliable normals and a Poisson octree; "
                       "alpha shapes need neither")
        return "alpha_shape", "sparse", reasons
    reasons.append(f"{count} points >= {rules.sparse_count}")
    if noise >= rules.noisy:
        reasons.append(f"noise {noise:.2f} >= {rules.noisy:g} of the spacing: Poisson's implicit fit averages it out "
                       "(interpolating methods would keep every noisy sample)")
        return "poisson", "noisy", reasons
    reasons.append(f"noise {noise:.2f} < {rules.noisy:g}")
    border = border_per_sqrt(boundary, count)
    if border < rules.closed_max_border:
        reasons.append(f"border points {boundary:.1%} = {border:.2f} x sqrt(N) < {rules.closed_max_border:g} x sqrt(N): "
                       "a closed surface, Poisson reconstructs the solid's boundary watertight")
        return "poisson", "closed", reasons
    reasons.append(f"border points {boundary:.1%} = {border:.2f} x sqrt(N) >= {rules.closed_max_border:g} x sqrt(N): "
                   "an open surface")
    if cv <= rules.uniform_cv:
        reasons.append(f"density cv {cv:.2f} <= {rules.uniform_cv:g}: even, clean and open, ball pivoting "
                       "interpolates the samples without closing the borders")
        return "ball_pivoting", "uniform-open", reasons
    reasons.append(f"density cv {cv:.2f} > {rules.uniform_cv:g}: uneven density would leave ball-pivoting holes; "
                   "Poisson (trimmed at low density) bridges them")
    return "poisson", "uneven-open", reasons
