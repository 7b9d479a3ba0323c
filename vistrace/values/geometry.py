"""3-D values: point clouds, their measured properties, the meshing choice, meshes and exported mesh files.

Arrays are read-only numpy copies (like :class:`~vistrace.values.DepthMap`). Coordinates are the
camera frame of the image they came from (OpenCV convention: x right, y down, z forward, in the depth's
unit); exported files use the glTF convention instead (see ``tools/builtin/geometry_mesh.py``).
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from .base import Value

MESH_METHODS = ("poisson", "ball_pivoting", "alpha_shape", "grid")
MESH_FORMATS = ("ply", "obj", "glb")


def _frozen_array(array, dtype, columns: int | None, what: str):
    import numpy as np

    a = np.array(array, dtype=dtype, copy=True)
    if columns is not None and (a.ndim != 2 or a.shape[1] != columns):
        raise ValueError(f"{what} must be an N x {columns} array, got shape {a.shape}")
    a.flags.writeable = False
    return a


def _optional(array, dtype, n: int, columns: int, what: str):
    if array is None:
        return None
    a = _frozen_array(array, dtype, columns, what)
    if a.shape[0] != n:
        raise ValueError(f"{what} has {a.shape[0]} rows for {n} points")
    return a


def _arrays_equal(a, b) -> bool:
    import numpy as np

    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


class PointCloud(Value):
    """3-D points (N x 3 float32) with optional colours (N x 3 uint8) and normals, in camera coordinates.

    A cloud back-projected from a depth map is *organised*: ``pixels`` (N x 2 int32, row and column in
    a ``grid_shape`` grid, the depth map sampled every ``stride`` pixels) says where each point came
    from, so the depth grid can be triangulated directly. ``intrinsics`` are (fx, fy, cx, cy) in
    pixels of that depth map; ``assumptions`` lists, in words, every assumption made building the cloud
    (focal length source, disparity to depth, dropped pixels).
    """

    type_name: ClassVar[str] = "PointCloud"
    public: ClassVar[frozenset[str]] = frozenset(
        {"count", "unit", "intrinsics", "assumptions", "organized", "grid_shape", "stride", "has_colors",
         "extent", "summary"})
    __slots__ = (
        "_frozen",
        "assumptions",
        "colors",
        "grid_shape",
        "intrinsics",
        "normals",
        "pixels",
        "points",
        "stride",
        "unit",
    )
    # field types (the planner's grammar reads them)
    grid_shape: tuple[int, int] | None
    stride: int
    intrinsics: tuple[float, float, float, float] | None
    unit: str
    assumptions: tuple[str, ...]

    def __init__(self, points, colors=None, normals=None, *, pixels=None, grid_shape=None, stride: int = 1,
                 intrinsics=None, unit: str = "", assumptions=()):
        import numpy as np

        self.points = _frozen_array(points, np.float32, 3, "points")
        n = self.points.shape[0]
        self.colors = _optional(colors, np.uint8, n, 3, "colors")
        self.normals = _optional(normals, np.float32, n, 3, "normals")
        self.pixels = _optional(pixels, np.int32, n, 2, "pixels")
        if (self.pixels is None) != (grid_shape is None):
            raise ValueError("pixels and grid_shape go together (an organised cloud needs both)")
        self.grid_shape = None if grid_shape is None else (int(grid_shape[0]), int(grid_shape[1]))
        self.stride = int(stride)
        self.intrinsics = None if intrinsics is None else tuple(float(v) for v in intrinsics)
        if self.intrinsics is not None and len(self.intrinsics) != 4:
            raise ValueError(f"intrinsics are (fx, fy, cx, cy), got {len(self.intrinsics)} numbers")
        self.unit = str(unit)
        self.assumptions = tuple(str(a) for a in assumptions)
        self._freeze()

    @property
    def count(self) -> int:
        return int(self.points.shape[0])

    @property
    def organized(self) -> bool:
        return self.pixels is not None

    @property
    def has_colors(self) -> bool:
        return self.colors is not None

    @property
    def extent(self) -> float:
        """The diagonal of the points' bounding box (0 for fewer than two points)."""
        import numpy as np

        if self.count < 2:
            return 0.0
        return float(np.linalg.norm(self.points.max(axis=0) - self.points.min(axis=0)))

    def __len__(self) -> int:
        return self.count

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PointCloud) and (self.grid_shape, self.stride, self.intrinsics, self.unit,
                                                  self.assumptions) == (other.grid_shape, other.stride,
                                                                        other.intrinsics, other.unit,
                                                                        other.assumptions) \
            and all(_arrays_equal(a, b) for a, b in ((self.points, other.points), (self.colors, other.colors),
                                                     (self.normals, other.normals), (self.pixels, other.pixels)))

    def __hash__(self) -> int:
        return hash((self.count, self.points.tobytes()[:4096]))

    def __repr__(self) -> str:
        return f"PointCloud({self.count} points{', organised' if self.organized else ''})"

    def summary(self) -> str:
        grid = f", organised {self.grid_shape[1]}x{self.grid_shape[0]} grid (every {self.stride} px)" \
            if self.grid_shape else ""
        unit = f" in {self.unit}" if self.unit else ""
        return f"{self.count} points{unit}{grid}, extent {self.extent:.3g}{', coloured' if self.has_colors else ''}"

    def to_json(self) -> dict[str, Any]:
        import numpy as np

        lo = self.points.min(axis=0).tolist() if self.count else []
        hi = self.points.max(axis=0).tolist() if self.count else []
        return {"type": "PointCloud", "count": self.count, "unit": self.unit, "bounds": [lo, hi],
                "organized": self.organized, "grid_shape": list(self.grid_shape) if self.grid_shape else None,
                "stride": self.stride, "intrinsics": list(self.intrinsics) if self.intrinsics else None,
                "has_colors": self.has_colors, "has_normals": self.normals is not None,
                "assumptions": list(self.assumptions),
                "sha256": hashlib.sha256(np.ascontiguousarray(self.points).tobytes()).hexdigest()}

    def draw(self, canvas=None):
        """The points seen from above-left of the camera, coloured by depth (near = warm), z-buffered."""
        from .raster import render_points

        return render_points(self.points)


class PointStats(Value):
    """Measured properties of a point cloud, the numbers the meshing rules read.

    Lengths are in the cloud's unit; ``noise``, ``curvature`` are relative (see docs/image_to_3d.md):
    ``spacing`` median nearest-neighbour distance; ``neighbour_radius`` median distance to the 8th
    neighbour; ``density_cv`` coefficient of variation of that distance (0 = perfectly uniform);
    ``noise`` median residual of a local quadric fit over 16 neighbours, in units of the local spacing;
    ``curvature`` median |mean curvature| x neighbourhood radius; ``planarity`` share of points within
    the inlier band of the best plane; ``boundary_fraction`` share of points whose neighbours leave an
    angular gap over 90 degrees (open borders and holes); ``missing_fraction`` share of an organised
    cloud's grid without a point (None when not organised); ``sample`` points measured.
    """

    type_name: ClassVar[str] = "PointStats"
    FIELDS: ClassVar[tuple[str, ...]] = ("count", "sample", "organized", "extent", "spacing", "neighbour_radius",
                                         "density_cv", "noise", "curvature", "planarity", "boundary_fraction",
                                         "missing_fraction")
    public: ClassVar[frozenset[str]] = frozenset(FIELDS + ("summary",))
    __slots__ = FIELDS + ("_frozen",)
    # field types (the planner's grammar reads them)
    count: int
    sample: int
    organized: bool
    extent: float
    spacing: float
    neighbour_radius: float
    density_cv: float
    noise: float
    curvature: float
    planarity: float
    boundary_fraction: float
    missing_fraction: float | None

    def __init__(self, *, count: int, sample: int, organized: bool, extent: float, spacing: float,
                 neighbour_radius: float, density_cv: float, noise: float, curvature: float, planarity: float,
                 boundary_fraction: float, missing_fraction: float | None = None):
        self.count, self.sample, self.organized = int(count), int(sample), bool(organized)
        self.extent, self.spacing, self.neighbour_radius = float(extent), float(spacing), float(neighbour_radius)
        self.density_cv, self.noise, self.curvature = float(density_cv), float(noise), float(curvature)
        self.planarity, self.boundary_fraction = float(planarity), float(boundary_fraction)
        self.missing_fraction = None if missing_fraction is None else float(missing_fraction)
        self._freeze()

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PointStats) and self.as_dict() == other.as_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.as_dict().values()))

    def __repr__(self) -> str:
        return f"PointStats({self.summary()})"

    def summary(self) -> str:
        missing = f", missing {self.missing_fraction:.1%}" if self.missing_fraction is not None else ""
        return (f"{self.count} points: spacing {self.spacing:.3g}, density cv {self.density_cv:.2f}, "
                f"noise {self.noise:.2f}, curvature {self.curvature:.3f}, planarity {self.planarity:.0%}, "
                f"boundary {self.boundary_fraction:.1%}{missing}")

    def to_json(self) -> dict[str, Any]:
        return {"type": "PointStats", **self.as_dict()}

    @classmethod
    def from_json(cls, d: dict) -> PointStats:
        return cls(**{f: d[f] for f in cls.FIELDS if f in d})


class MesherChoice(Value):
    """The meshing algorithm chosen by the rules, the rule that decided, and why (with the numbers)."""

    type_name: ClassVar[str] = "MesherChoice"
    public: ClassVar[frozenset[str]] = frozenset({"method", "rule", "reasons", "summary"})
    __slots__ = ("_frozen", "method", "reasons", "rule")
    # field types (the planner's grammar reads them)
    method: str
    rule: str
    reasons: tuple[str, ...]

    def __init__(self, method: str, rule: str, reasons=()):
        if method not in MESH_METHODS:
            raise ValueError(f"meshing method must be one of {', '.join(MESH_METHODS)}, got {method!r}")
        self.method = method
        self.rule = str(rule)
        self.reasons = tuple(str(r) for r in reasons)
        self._freeze()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MesherChoice) and (self.method, self.rule, self.reasons) == (
            other.method, other.rule, other.reasons)

    def __hash__(self) -> int:
        return hash((self.method, self.rule, self.reasons))

    def __repr__(self) -> str:
        return f"MesherChoice({self.method!r}, rule={self.rule!r})"

    def summary(self) -> str:
        why = self.reasons[-1] if self.reasons else ""
        return f"{self.method} ({self.rule}: {why})"

    def to_json(self) -> dict[str, Any]:
        return {"type": "MesherChoice", "method": self.method, "rule": self.rule, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, d: dict) -> MesherChoice:
        return cls(d["method"], d["rule"], d.get("reasons", ()))


def mesh_stats(vertices, faces) -> dict[str, Any]:
    """Vertex/face counts, surface area, edge manifoldness and whether the mesh is watertight.

    Watertight here: every edge is shared by exactly two faces (trimesh's ``is_watertight`` test);
    ``boundary_edges`` are edges of one face, ``nonmanifold_edges`` of three or more.
    """
    import numpy as np

    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if len(f) == 0:
        return {"vertices": len(v), "faces": 0, "area": 0.0, "watertight": False, "boundary_edges": 0,
                "nonmanifold_edges": 0}
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    area = float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges[:, 0] * (int(f.max()) + 1) + edges[:, 1], return_counts=True)  # one key per edge
    boundary = int((counts == 1).sum())
    nonmanifold = int((counts > 2).sum())
    return {"vertices": len(v), "faces": len(f), "area": area,
            "watertight": bool(boundary == 0 and nonmanifold == 0), "boundary_edges": boundary,
            "nonmanifold_edges": nonmanifold}


class Mesh(Value):
    """A triangle mesh (vertices N x 3 float32, faces M x 3 int32, optional vertex colours N x 3 uint8).

    ``method`` is the algorithm that built it and ``params`` the numbers it used (radii, octree depth,
    alpha, culling thresholds); ``stats`` are computed from the arrays (see :func:`mesh_stats`).
    """

    type_name: ClassVar[str] = "Mesh"
    public: ClassVar[frozenset[str]] = frozenset(
        {"method", "params", "vertex_count", "face_count", "watertight", "area", "boundary_edges", "summary"})
    __slots__ = ("_frozen", "colors", "faces", "method", "params", "stats", "vertices")
    # field types (the planner's grammar reads them)
    method: str
    params: dict

    def __init__(self, vertices, faces, colors=None, *, method: str, params: dict | None = None):
        import numpy as np

        self.vertices = _frozen_array(vertices, np.float32, 3, "vertices")
        self.faces = _frozen_array(np.asarray(faces).reshape(-1, 3), np.int32, 3, "faces")
        if len(self.faces) and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise ValueError("faces refer to vertices that do not exist")
        self.colors = _optional(colors, np.uint8, len(self.vertices), 3, "colors")
        self.method = str(method)
        self.params = dict(params or {})
        self.stats = mesh_stats(self.vertices, self.faces)
        self._freeze()

    @property
    def vertex_count(self) -> int:
        return self.stats["vertices"]

    @property
    def face_count(self) -> int:
        return self.stats["faces"]

    @property
    def watertight(self) -> bool:
        return self.stats["watertight"]

    @property
    def area(self) -> float:
        return self.stats["area"]

    @property
    def boundary_edges(self) -> int:
        return self.stats["boundary_edges"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mesh) and (self.method, self.params) == (other.method, other.params) and all(
            _arrays_equal(a, b) for a, b in ((self.vertices, other.vertices), (self.faces, other.faces),
                                             (self.colors, other.colors)))

    def __hash__(self) -> int:
        return hash((self.method, self.vertex_count, self.face_count))

    def __repr__(self) -> str:
        return f"Mesh({self.method}, {self.vertex_count} vertices, {self.face_count} faces)"

    def summary(self) -> str:
        tight = "watertight" if self.watertight else f"open ({self.boundary_edges} boundary edges)"
        return f"{self.method} mesh: {self.vertex_count} vertices, {self.face_count} faces, {tight}"

    def to_json(self) -> dict[str, Any]:
        import numpy as np

        h = hashlib.sha256(np.ascontiguousarray(self.vertices).tobytes())
        h.update(np.ascontiguousarray(self.faces).tobytes())
        return {"type": "Mesh", "method": self.method, "params": dict(self.params), **self.stats,
                "has_colors": self.colors is not None, "sha256": h.hexdigest()}

    def draw(self, canvas=None):
        """The rendered preview (flat-shaded, z-buffered, seen from above-left of the camera)."""
        from .raster import render_mesh

        return render_mesh(self.vertices, self.faces, self.colors)


class MeshFile(Value):
    """An exported mesh file (PLY, OBJ or GLB bytes); the run folder writes it to ``exports/NAME.FORMAT``."""

    type_name: ClassVar[str] = "MeshFile"
    public: ClassVar[frozenset[str]] = frozenset({"format", "name", "filename", "size", "sha256", "summary"})
    __slots__ = ("_frozen", "data", "format", "name", "sha256")
    # field types (the planner's grammar reads them)
    format: str
    name: str
    sha256: str

    def __init__(self, data: bytes, format: str, name: str = "mesh"):
        if format not in MESH_FORMATS:
            raise ValueError(f"mesh file format must be one of {', '.join(MESH_FORMATS)}, got {format!r}")
        self.data = bytes(data)
        self.format = format
        self.name = str(name)
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self._freeze()

    @property
    def filename(self) -> str:
        return f"{self.name}.{self.format}"

    @property
    def size(self) -> int:
        return len(self.data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MeshFile) and (self.format, self.name, self.data) == (
            other.format, other.name, other.data)

    def __hash__(self) -> int:
        return hash((self.format, self.name, self.sha256))

    def __repr__(self) -> str:
        return f"MeshFile({self.filename!r}, {self.size} bytes)"

    def summary(self) -> str:
        size = f"{self.size / 1e6:.2f} MB" if self.size >= 100_000 else f"{self.size / 1e3:.1f} kB"
        return f"{self.filename} ({self.format.upper()}, {size})"

    def to_json(self) -> dict[str, Any]:
        return {"type": "MeshFile", "format": self.format, "name": self.name, "filename": self.filename,
                "size": self.size, "sha256": self.sha256}
