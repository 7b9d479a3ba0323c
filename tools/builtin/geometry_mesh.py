"""Image to 3-D, the meshers: grid triangulation (pure numpy/scipy) and thin Open3D and trimesh adapters.

Each mesher takes arrays and the measured properties and returns (vertices, faces, colours, params):
the numbers it used go into the :class:`~vistrace.values.Mesh` so the trace says how it was built.
Open3D and trimesh are imported inside the functions (``import vistrace`` stays light).
"""

from __future__ import annotations

from typing import Any

from vistrace.errors import BackendUnavailable, ToolError

from .geometry_core import DEFAULT_RULES, border_per_sqrt

# grid triangulation
JUMP_SLOPE = 10.0            # keep a grid triangle while its depth spread <= 10 x the pixel footprint (~84 deg slant)
JUMP_FLOOR = 0.10            # ... and always while under 10 % (stereo noise at small disparities)
PLANE_EDGE_FACTOR = 4.0      # planar Delaunay: drop triangles with an edge over 4 x the 8th-neighbour distance
# Open3D
NORMAL_NEIGHBOURS = 30
POISSON_DEPTH = 8
POISSON_TRIM_QUANTILE = 0.05  # open surfaces: drop the 5 % least-supported Poisson vertices (extrapolation)
BALL_RADII = (1.5, 3.0, 6.0)  # x the median nearest-neighbour spacing
ALPHA_FACTOR = 2.0           # alpha = 2 x the median 8th-neighbour distance

GEOMETRY_FIX = "pip install 'vistrace[geometry]' (Open3D and trimesh; Open3D needs Debian's libusb-1.0-0)"


def _open3d():
    try:
        import open3d as o3d
    except ImportError as exc:
        raise BackendUnavailable(f"this meshing method needs Open3D, which is not importable: {exc}",
                                 fix=GEOMETRY_FIX) from None
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    return o3d


def _trimesh():
    try:
        import trimesh
    except ImportError as exc:
        raise BackendUnavailable(f"mesh export needs trimesh, which is not importable: {exc}", fix=GEOMETRY_FIX) from None
    return trimesh


# --- grid triangulation (pure) ----------------------------------------------------------------

def grid_faces(pixels, grid_shape, depth, max_spread):
    """Triangles over an organised grid: two per 2 x 2 cell of valid points (one when a corner is missing).

    ``pixels`` (N x 2 row, column), ``depth`` (N,) camera z. A triangle is dropped at a depth jump: when
    (max z - min z) / min z exceeds ``max_spread``. Returns faces (M x 3 int64) into the points.
    """
    import numpy as np

    rows, cols = grid_shape
    index = np.full((rows + 1, cols + 1), -1, dtype=np.int64)   # padded: cells at the last row/column see -1
    index[pixels[:, 0], pixels[:, 1]] = np.arange(len(pixels))
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()      # a b
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()        # c d
    quads = np.stack([a, b, c, d], axis=1)
    full = (quads >= 0).all(axis=1)
    tris = [quads[full][:, [0, 2, 1]], quads[full][:, [1, 2, 3]]]
    three = (quads >= 0).sum(axis=1) == 3
    for missing, corners in ((0, [1, 2, 3]), (1, [0, 2, 3]), (2, [0, 3, 1]), (3, [0, 2, 1])):
        pick = three & (quads[:, missing] < 0)
        tris.append(quads[pick][:, corners])
    faces = np.concatenate(tris) if tris else np.zeros((0, 3), np.int64)
    if not len(faces):
        return faces
    z = np.asarray(depth, dtype=np.float64)[faces]
    spread = (z.max(axis=1) - z.min(axis=1)) / np.maximum(z.min(axis=1), 1e-12)
    return faces[spread <= max_spread]


def plane_faces(points, max_edge):
    """Delaunay triangles of the points projected onto their best-fit plane, edges longer than ``max_edge`` dropped."""
    import numpy as np
    from scipy.spatial import Delaunay

    p = np.asarray(points, dtype=np.float64)
    centred = p - p.mean(axis=0)
    _, _, vt = np.linalg.svd(centred[:: max(1, len(p) // 20000)], full_matrices=False)
    uv = centred @ vt[:2].T
    faces = Delaunay(uv).simplices.astype(np.int64)
    e = np.stack([np.linalg.norm(p[faces[:, i]] - p[faces[:, (i + 1) % 3]], axis=1) for i in range(3)], axis=1)
    return faces[e.max(axis=1) <= max_edge]


def mesh_grid(cloud, stats: dict[str, Any]):
    """Grid triangulation: over the pixel grid when the cloud is organised, else over its dominant plane."""
    import numpy as np

    if cloud.organized:
        fx = cloud.intrinsics[0] if cloud.intrinsics else 1.0
        spread = max(JUMP_FLOOR, JUMP_SLOPE * cloud.stride / fx)
        faces = grid_faces(cloud.pixels, cloud.grid_shape, cloud.points[:, 2], spread)
        params = {"domain": "pixel grid", "stride_px": cloud.stride, "max_depth_spread": round(spread, 5),
                  "jump_slope": JUMP_SLOPE, "jump_floor": JUMP_FLOOR}
    else:
        max_edge = PLANE_EDGE_FACTOR * stats["neighbour_radius"]
        faces = plane_faces(cloud.points, max_edge)
        params = {"domain": "dominant plane (Delaunay)", "max_edge": round(max_edge, 6),
                  "edge_factor": PLANE_EDGE_FACTOR}
    return np.asarray(cloud.points), faces, cloud.colors, params


# --- Open3D -----------------------------------------------------------------------------------

def _o3d_cloud(o3d, cloud, oriented: bool):
    import numpy as np

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(cloud.points, dtype=np.float64)))
    if cloud.colors is not None:
        pcd.colors = o3d.utility.Vector3dVector(np.asarray(cloud.colors, dtype=np.float64) / 255.0)
    if not oriented:
        return pcd, "none"
    if cloud.normals is not None:
        pcd.normals = o3d.utility.Vector3dVector(np.asarray(cloud.normals, dtype=np.float64))
        return pcd, "given"
    pcd.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(NORMAL_NEIGHBOURS))
    if cloud.organized:  # seen from one camera at the origin: every normal faces it
        pcd.orient_normals_towards_camera_location(np.zeros(3))
        return pcd, f"{NORMAL_NEIGHBOURS}-NN PCA, towards the camera"
    pcd.orient_normals_consistent_tangent_plane(NORMAL_NEIGHBOURS)
    pts, nrm = np.asarray(pcd.points), np.asarray(pcd.normals)
    if float(((pts - pts.mean(axis=0)) * nrm).sum()) < 0:  # consistent, but pointing inwards: flip all
        pcd.normals = o3d.utility.Vector3dVector(-nrm)
    return pcd, f"{NORMAL_NEIGHBOURS}-NN PCA, consistent tangent plane, outwards"


def _from_o3d(mesh):
    import numpy as np

    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_triangles()
    mesh.remove_unreferenced_vertices()
    v = np.asarray(mesh.vertices, dtype=np.float32)
    f = np.asarray(mesh.triangles, dtype=np.int64)
    colors = None
    if mesh.has_vertex_colors() and len(mesh.vertex_colors) == len(v):
        colors = np.clip(np.asarray(mesh.vertex_colors) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return v, f, colors


def mesh_poisson(cloud, stats: dict[str, Any]):
    import numpy as np

    o3d = _open3d()
    pcd, normals = _o3d_cloud(o3d, cloud, oriented=True)
    mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(pcd, depth=POISSON_DEPTH)
    closed = border_per_sqrt(stats["boundary_fraction"], stats["count"]) < DEFAULT_RULES.closed_max_border
    trim = 0.0 if closed else POISSON_TRIM_QUANTILE
    if trim:
        density = np.asarray(density)
        mesh.remove_vertices_by_mask(density < np.quantile(density, trim))
    v, f, colors = _from_o3d(mesh)
    return v, f, colors, {"octree_depth": POISSON_DEPTH, "normals": normals, "trim_quantile": trim}


def mesh_ball_pivoting(cloud, stats: dict[str, Any]):
    o3d = _open3d()
    pcd, normals = _o3d_cloud(o3d, cloud, oriented=True)
    radii = [r * stats["spacing"] for r in BALL_RADII]
    mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(pcd, o3d.utility.DoubleVector(radii))
    v, f, colors = _from_o3d(mesh)
    return v, f, colors, {"radii": [round(r, 6) for r in radii], "radii_x_spacing": list(BALL_RADII),
                          "normals": normals}


def mesh_alpha_shape(cloud, stats: dict[str, Any]):
    o3d = _open3d()
    pcd, _ = _o3d_cloud(o3d, cloud, oriented=False)
    alpha = ALPHA_FACTOR * stats["neighbour_radius"]
    try:
        mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_alpha_shape(pcd, alpha)
    except RuntimeError as exc:  # Qhull refuses degenerate input, e.g. exactly coplanar points
        raise ToolError(f"alpha shape failed on this cloud: {exc}",
                        hint="exactly planar points have no 3-D alpha shape; use method='grid'") from None
    v, f, colors = _from_o3d(mesh)
    return v, f, colors, {"alpha": round(alpha, 6), "alpha_x_neighbour_radius": ALPHA_FACTOR}


MESHERS = {"grid": mesh_grid, "poisson": mesh_poisson, "ball_pivoting": mesh_ball_pivoting,
           "alpha_shape": mesh_alpha_shape}


# --- export (trimesh) -------------------------------------------------------------------------

def gltf_frame(vertices):
    """Camera frame (x right, y down, z forward) to glTF's (x right, y up, z towards the viewer): a rotation."""
    import numpy as np

    v = np.asarray(vertices, dtype=np.float64).copy()
    v[:, 1:] *= -1.0
    return v


def export_bytes(vertices, faces, colors, file_format: str) -> bytes:
    """The mesh as PLY (binary), OBJ (text, vertex colours on ``v`` lines) or GLB bytes, via trimesh."""
    trimesh = _trimesh()
    tm = trimesh.Trimesh(vertices=gltf_frame(vertices), faces=faces, vertex_colors=colors, process=False)
    data = tm.export(file_type=file_format)
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)
