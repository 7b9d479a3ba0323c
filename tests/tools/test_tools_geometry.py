"""Image to 3-D: intrinsics, back-projection, measurements, the meshing rules, meshers, export, preview.

The rule tests use synthetic clouds with known shape (a dense smooth sphere, a dense open paraboloid
patch, a sparse noisy sphere, a plane, a noisy sphere); the pipeline tests use the skimage stereo pair.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image as PILImage
from vistrace.tools.builtin import geometry_core as core
from vistrace.tools.builtin.geometry import (
    choose_mesher,
    depth_for,
    export_mesh,
    measure_points,
    mesh,
    point_cloud,
    render_mesh,
)
from vistrace.tools.builtin.geometry_mesh import grid_faces

from vistrace.errors import BackendUnavailable, ToolArgumentError
from vistrace.values import (
    DepthMap,
    Image,
    Mesh,
    MesherChoice,
    MeshFile,
    PointCloud,
    PointStats,
)
from vistrace.values.codec import dumps, fingerprint, loads
from vistrace.values.geometry import mesh_stats
from vistrace.values.raster import rasterize

# --- synthetic clouds -----------------------------------------------------------------------------

def sphere(n: int = 20000, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Fibonacci points on the unit sphere (even spacing), optionally with Gaussian noise."""
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), np.pi * (1 + 5 ** 0.5) * i
    p = np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], axis=1)
    return p + np.random.default_rng(seed).normal(0, noise, p.shape) if noise else p


def paraboloid(side: int = 141, seed: int = 0) -> np.ndarray:
    """An open, smooth, evenly (jittered-grid) sampled patch z = (x^2 + y^2) / 2 over [-1, 1]^2."""
    rng = np.random.default_rng(seed)
    u, v = (a.ravel() for a in np.meshgrid(np.linspace(-1, 1, side), np.linspace(-1, 1, side)))
    u, v = u + rng.uniform(-0.3, 0.3, u.size) * 2 / side, v + rng.uniform(-0.3, 0.3, v.size) * 2 / side
    return np.stack([u, v, 0.5 * (u ** 2 + v ** 2)], axis=1)


def plane(n: int = 10000, seed: int = 0) -> np.ndarray:
    """A tilted plane patch with millimetre-scale noise (a wall seen by a camera)."""
    rng = np.random.default_rng(seed)
    u, v = rng.uniform(-1, 1, n), rng.uniform(-1, 1, n)
    p = np.stack([u, v, 0.3 * u - 0.2 * v + 2.0], axis=1)
    return p + rng.normal(0, 0.002, p.shape)


CLOUDS = {
    "dense smooth sphere": (lambda: sphere(20000), "poisson", "closed"),
    "dense smooth open patch": (lambda: paraboloid(), "ball_pivoting", "uniform-open"),
    "sparse noisy points": (lambda: sphere(600, noise=0.08), "alpha_shape", "sparse"),
    "planar scene": (lambda: plane(), "grid", "planar"),
    "dense noisy sphere": (lambda: sphere(20000, noise=0.02), "poisson", "noisy"),
}


@pytest.fixture(scope="module")
def motorcycle():
    data = pytest.importorskip("skimage.data")
    left, right, _ = data.stereo_motorcycle()
    return Image.from_array(left, "motorcycle left"), Image.from_array(right, "motorcycle right")


@pytest.fixture(scope="module")
def moto_cloud(motorcycle):
    from vistrace.tools import default_registry

    reg = default_registry()
    dm = depth_for.invoke({"image": motorcycle[0], "right": motorcycle[1]}, reg)[0]
    return point_cloud(depth=dm, image=motorcycle[0])


# --- the rules: different inputs get different algorithms ---------------------------------------

@pytest.mark.parametrize("name", list(CLOUDS))
def test_each_kind_of_cloud_gets_its_algorithm(name):
    # given a synthetic cloud of a known kind
    make, expected, rule = CLOUDS[name]
    cloud = PointCloud(make())
    # when it is measured and the rules choose
    choice = choose_mesher(stats=measure_points(points=cloud))
    # then the expected algorithm is chosen by the expected rule, with the numbers in the reasons
    assert (choice.method, choice.rule) == (expected, rule), choice.reasons
    assert any(ch.isdigit() for ch in choice.reasons[-1])


def test_smooth_sparse_and_planar_inputs_get_three_different_algorithms():
    chosen = {name: choose_mesher(stats=measure_points(points=PointCloud(CLOUDS[name][0]()))).method
              for name in ("dense smooth sphere", "sparse noisy points", "planar scene")}
    assert len(set(chosen.values())) == 3, chosen


def test_measurements_read_the_shape():
    smooth = core.measure(sphere(20000))
    noisy = core.measure(sphere(20000, noise=0.02))
    flat = core.measure(plane())
    # noise: zero on the clean sphere, about the noise over the spacing on the noisy one
    assert smooth["noise"] < 0.05 and noisy["noise"] > 0.5
    # planarity: the plane is one plane, the sphere is not
    assert flat["planarity"] > 0.95 and smooth["planarity"] < 0.2
    # the closed sphere has no border, the plane patch has one; even sampling has a low density cv
    assert smooth["boundary_fraction"] < 0.005 < flat["boundary_fraction"]
    assert smooth["density_cv"] < 0.1
    # curvature x neighbourhood radius of the unit sphere is about the radius of 16 neighbours
    assert 0.02 < smooth["curvature"] < 0.1


def test_measurements_are_deterministic():
    p = sphere(9000, noise=0.01)
    assert core.measure(p) == core.measure(p)


def stats(**over) -> dict:
    base = {"count": 50000, "sample": 4000, "organized": False, "extent": 3.0, "spacing": 0.01,
            "neighbour_radius": 0.03, "density_cv": 0.1, "noise": 0.1, "curvature": 0.05, "planarity": 0.2,
            "boundary_fraction": 0.0, "missing_fraction": None}
    return {**base, **over}


@pytest.mark.parametrize("over, method, rule", [
    ({"organized": True, "missing_fraction": 0.1}, "grid", "organised-grid"),
    ({"organized": True, "missing_fraction": 0.7}, "poisson", "closed"),          # too many holes for the grid
    ({"organized": True, "missing_fraction": 0.1, "noise": 0.8}, "poisson", "noisy"),
    ({"planarity": 0.95}, "grid", "planar"),
    ({"count": 1000}, "alpha_shape", "sparse"),
    ({"noise": 0.6}, "poisson", "noisy"),
    ({"boundary_fraction": 0.001}, "poisson", "closed"),
    ({"boundary_fraction": 0.02}, "ball_pivoting", "uniform-open"),
    ({"boundary_fraction": 0.02, "density_cv": 0.8}, "poisson", "uneven-open"),
])
def test_rules_in_order(over, method, rule):
    got, got_rule, reasons = core.choose_method(stats(**over))
    assert (got, got_rule) == (method, rule)
    assert len(reasons) >= 1 and all(isinstance(r, str) and r for r in reasons)


def test_the_reasons_say_why_earlier_rules_did_not_apply():
    _, _, reasons = core.choose_method(stats(boundary_fraction=0.02))
    text = " | ".join(reasons)
    assert "not an organised depth grid" in text and "planarity 20% < 90%" in text and "50000 points >= 3000" in text


# --- intrinsics and back-projection ---------------------------------------------------------------

def jpeg_with_exif(tags: dict[int, object], size=(400, 300)) -> Image:
    exif = PILImage.Exif()
    sub = exif.get_ifd(0x8769)
    for tag, value in tags.items():
        sub[tag] = value
    buf = io.BytesIO()
    PILImage.new("RGB", size, (90, 120, 150)).save(buf, format="JPEG", exif=exif)
    buf.seek(0)
    pil = PILImage.open(buf)
    pil.load()
    return Image(pil, source="exif.jpg")


def test_intrinsics_from_35mm_equivalent_focal_length():
    img = jpeg_with_exif({core.TAG_FOCAL_35MM: 28})
    (fx, fy, cx, cy), how = core.intrinsics_for(core.exif_tags(img.pil), 400, 300)
    assert fx == pytest.approx(28 * 500 / core.FULL_FRAME_DIAGONAL_MM) and fy == fx
    assert (cx, cy) == (200, 150) and "35 mm-equivalent focal length 28 mm" in how


def test_intrinsics_from_focal_length_and_focal_plane_resolution_scaled_to_the_image():
    # 4 mm lens, 1000 px/mm sensor, 4000 px wide originally; the image is 400 px wide
    tags = {core.TAG_FOCAL_LENGTH: 4.0, core.TAG_FOCAL_PLANE_XRES: 1000.0, core.TAG_FOCAL_PLANE_UNIT: 4,
            core.TAG_PIXEL_X_DIMENSION: 4000}
    (fx, _, _, _), how = core.intrinsics_for(tags, 400, 300)
    assert fx == pytest.approx(400.0) and "EXIF focal length 4 mm" in how


def test_without_exif_the_stated_field_of_view_is_used():
    (fx, _, _, _), how = core.intrinsics_for({}, 400, 300, fov_deg=90.0)
    assert fx == pytest.approx(200.0) and "assumed horizontal field of view 90 deg" in how


def test_a_crop_keeps_the_root_intrinsics_in_its_own_pixels():
    assert core.crop_intrinsics((500.0, 500.0, 200.0, 150.0), (100, 50), (2.0, 2.0)) == (1000, 1000, 200, 200)


def test_disparity_becomes_depth_with_the_stated_baseline():
    z, unit, why = core.depth_to_z(np.array([[10.0, np.nan, 0.0]]), "larger_is_nearer", "disparity px", 500.0, 0.2)
    assert z[0, 0] == pytest.approx(10.0) and np.isnan(z[0, 1:]).all()
    assert unit == "baseline units" and "B = 0.2" in why and "f = 500.0 px" in why


def test_a_fronto_parallel_wall_back_projects_to_a_flat_grid(make_image):
    # given a metric depth map of a wall 2 m away and a 90 degree field of view
    img = make_image(200, 100)
    depth = DepthMap(np.full((100, 200), 2.0), "larger_is_farther", "m")
    # when back-projected
    cloud = point_cloud(depth=depth, image=img, fov=90.0, max_points=5000)
    # then every point is at z = 2 and x spans the field of view (tan 45 deg x 2 m = 2 m each side)
    assert np.allclose(cloud.points[:, 2], 2.0)
    assert cloud.points[:, 0].min() == pytest.approx(-2.0, abs=0.05) and cloud.points[:, 0].max() == pytest.approx(2.0,
                                                                                                                   abs=0.05)
    assert cloud.organized and cloud.stride == 2 and cloud.count == 5000 and cloud.unit == "m"
    assert any("assumed horizontal field of view 90 deg" in a for a in cloud.assumptions)


@pytest.mark.parametrize("args, message", [
    ({"fov": 5.0}, "argument 'fov'"),
    ({"fov": 175.0}, "argument 'fov'"),
    ({"max_points": 10}, "argument 'max_points'"),
    ({"baseline": 0.0}, "argument 'baseline'"),
    ({"baseline": float("inf")}, "argument 'baseline'"),
    ({"disparity_offset": -1.0}, "argument 'disparity_offset'"),
])
def test_point_cloud_rejects_bad_arguments(make_image, args, message):
    depth = DepthMap(np.full((20, 30), 2.0), "larger_is_farther", "m")
    with pytest.raises(ToolArgumentError, match=message):
        point_cloud(depth=depth, image=make_image(30, 20), **args)


def test_point_cloud_needs_the_image_the_depth_was_computed_on(make_image):
    depth = DepthMap(np.full((20, 30), 2.0), "larger_is_farther", "m")
    with pytest.raises(ToolArgumentError, match="argument 'image' must be the 30x20 image"):
        point_cloud(depth=depth, image=make_image(40, 20))


# --- depth model choice ---------------------------------------------------------------------------

def test_one_image_without_a_depth_model_names_what_to_configure(bare_registry, make_image):
    with pytest.raises(BackendUnavailable) as err:
        depth_for.invoke({"image": make_image(64, 48)}, bare_registry)
    assert "no monocular depth model is configured" in err.value.message
    assert "docs/adapters.md" in err.value.fix and "right=" in err.value.fix


def test_one_image_uses_the_configured_depth_backend_and_says_so(gt_registry, make_image):
    dm, info = depth_for.invoke({"image": make_image(64, 48)}, gt_registry)
    assert "synthetic-depth-ramp-test-double" in dm.source and "one image" in dm.source
    assert "depth: synthetic-depth-ramp-test-double" in info["reason"]


def test_a_stereo_pair_uses_stereo_depth_and_says_so(motorcycle, bare_registry):
    dm, info = depth_for.invoke({"image": motorcycle[0], "right": motorcycle[1]}, bare_registry)
    assert dm.unit == "disparity px" and dm.source.startswith("stereo_depth (OpenCV StereoSGBM")
    assert "stereo_depth" in info["reason"]


def test_a_stereo_pair_must_have_one_size(bare_registry, make_image):
    with pytest.raises(ToolArgumentError, match="argument 'right' must be the same size"):
        depth_for.invoke({"image": make_image(64, 48), "right": make_image(60, 48)}, bare_registry)


# --- grid triangulation, stats, raster (pure) -----------------------------------------------------

def test_grid_faces_two_per_full_cell_one_per_cell_missing_a_corner():
    rows, cols = np.mgrid[0:3, 0:3]
    pixels = np.stack([rows.ravel(), cols.ravel()], axis=1)
    assert len(grid_faces(pixels, (3, 3), np.ones(9), 0.1)) == 8
    keep = ~((pixels[:, 0] == 0) & (pixels[:, 1] == 0))       # drop the top-left corner
    assert len(grid_faces(pixels[keep], (3, 3), np.ones(8), 0.1)) == 7


def test_grid_faces_are_cut_at_depth_jumps():
    rows, cols = np.mgrid[0:2, 0:3]
    pixels = np.stack([rows.ravel(), cols.ravel()], axis=1)
    depth = np.where(pixels[:, 1] == 2, 5.0, 1.0)              # the right column is far behind
    assert len(grid_faces(pixels, (2, 3), depth, 0.1)) == 2    # only the left cell's two triangles remain


def test_mesh_stats_agree_with_trimesh():
    trimesh = pytest.importorskip("trimesh")
    for tm in (trimesh.creation.icosphere(subdivisions=2), trimesh.creation.box(),
               trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])):
        s = mesh_stats(tm.vertices, tm.faces)
        assert s["watertight"] == tm.is_watertight and s["faces"] == len(tm.faces)
        assert s["area"] == pytest.approx(tm.area)


def test_rasterize_keeps_the_nearest_triangle():
    px = np.array([[0, 0], [10, 0], [0, 10], [0, 0], [10, 0], [0, 10]], dtype=float)
    depth = np.array([5, 5, 5, 1, 1, 1], dtype=float)
    faces = np.array([[0, 1, 2], [3, 5, 4]])                  # the second is nearer (and wound the other way)
    out = rasterize(px, depth, faces, 12, 12)
    assert (out == 1).sum() > 40 and (out == 0).sum() == 0
    assert out[11, 11] == -1


# --- meshers, export, preview, values -------------------------------------------------------------

@pytest.mark.parametrize("method", ["grid", "poisson", "ball_pivoting", "alpha_shape"])
def test_every_method_meshes_a_small_sphere(method):
    pytest.importorskip("open3d")
    cloud = PointCloud(sphere(3000, noise=0.002) if method != "grid" else plane(3000))
    out = mesh(points=cloud, method=method)
    assert out.method == method and out.face_count > 1000
    assert out.faces.max() < out.vertex_count


def test_auto_records_the_rule_and_reasons():
    out = mesh(points=PointCloud(plane(3000)))
    assert out.method == "grid" and out.params["chosen_by"] == "planar" and out.params["reasons"]


def test_stats_of_another_cloud_are_refused():
    st = measure_points(points=PointCloud(plane(500)))
    with pytest.raises(ToolArgumentError, match="argument 'stats' measures 500 points"):
        mesh(points=PointCloud(plane(600)), method="grid", stats=st)


def test_too_few_points_cannot_be_measured():
    with pytest.raises(ToolArgumentError, match="argument 'points' needs at least 17 points"):
        measure_points(points=PointCloud(plane(10)))


@pytest.mark.parametrize("fmt", ["ply", "obj", "glb"])
def test_export_round_trips_through_trimesh_in_gltf_axes(fmt):
    trimesh = pytest.importorskip("trimesh")
    src = mesh(points=PointCloud(plane(2000)), method="grid")
    f = export_mesh(mesh=src, format=fmt)
    assert f.filename == f"mesh.{fmt}" and f.size > 1000
    loaded = trimesh.load(io.BytesIO(f.data), file_type=fmt, force="mesh", process=False)
    assert len(loaded.faces) == src.face_count
    assert np.allclose(np.sort(loaded.vertices[:, 2]), np.sort(-src.vertices[:, 2]), atol=1e-5)  # z towards the viewer


@pytest.mark.parametrize("name", ["", "../up", ".hidden", "a b", "x/y"])
def test_export_refuses_names_that_are_not_plain_file_names(name):
    src = mesh(points=PointCloud(plane(500)), method="grid")
    with pytest.raises(ToolArgumentError, match="argument 'name'"):
        export_mesh(mesh=src, format="ply", name=name)


@pytest.mark.parametrize("args, message", [({"size": 10}, "argument 'size'"), ({"azimuth": 200.0}, "argument 'azimuth'"),
                                           ({"elevation": -95.0}, "argument 'elevation'")])
def test_render_rejects_bad_arguments(args, message):
    src = mesh(points=PointCloud(plane(500)), method="grid")
    with pytest.raises(ToolArgumentError, match=message):
        render_mesh(mesh=src, **args)


def test_values_round_trip_exactly_and_fingerprint_by_content():
    cloud = PointCloud(plane(300), np.full((300, 3), 7), pixels=np.zeros((300, 2)), grid_shape=(10, 30), stride=2,
                       intrinsics=(1, 1, 0, 0), unit="m", assumptions=("a",))
    st = measure_points(points=cloud)
    choice = choose_mesher(stats=st)
    m = mesh(points=PointCloud(plane(300)), method="grid")
    f = MeshFile(b"ply\n", "ply", "x")
    for v in (cloud, st, choice, m, f):
        assert loads(dumps(v)) == v
    assert isinstance(loads(dumps(st)), PointStats) and isinstance(loads(dumps(choice)), MesherChoice)
    assert fingerprint(PointCloud(plane(300))) != fingerprint(PointCloud(plane(300, seed=1)))
    assert len(str(cloud.to_json())) < 2000 and len(str(m.to_json())) < 2000  # summaries, not arrays


def test_the_motorcycle_pair_becomes_an_organised_cloud_meshed_on_its_grid(moto_cloud):
    # given the skimage stereo pair, back-projected with the stated 60 degree field of view
    assert moto_cloud.organized and 20000 < moto_cloud.count <= 60000
    assert math.isclose(moto_cloud.intrinsics[0], 370.5 / math.tan(math.radians(30)), rel_tol=1e-6)
    # when measured and meshed by the rules
    choice = choose_mesher(stats=measure_points(points=moto_cloud))
    out = mesh(points=moto_cloud, method=choice.method)
    # then the grid is triangulated: most grid cells become two triangles, the preview shows it
    assert choice.method == "grid" and out.face_count > 1.5 * moto_cloud.count
    preview = render_mesh(mesh=out)
    assert preview.width == 640 and len(np.unique(np.asarray(preview.pil).reshape(-1, 3), axis=0)) > 100
    assert isinstance(out, Mesh) and out.colors is not None
