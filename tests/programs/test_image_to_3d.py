"""The image_to_3d family program: the skimage stereo pair -> mesh files and a preview in the run folder."""

from __future__ import annotations

import json

import pytest
from vistrace.programs import library
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin

import vistrace
from vistrace.values import Image, Mesh

pytest.importorskip("open3d")
pytest.importorskip("trimesh")


@pytest.fixture(scope="module")
def pair():
    data = pytest.importorskip("skimage.data")
    left, right, _ = data.stereo_motorcycle()
    return Image.from_array(left, "motorcycle_left.png"), Image.from_array(right, "motorcycle_right.png")


@pytest.fixture(scope="module")
def saved(pair, tmp_path_factory):
    run = vistrace.run(library()["image_to_3d"], cache=False, name="image_to_3d", left=pair[0], right=pair[1])
    assert run.ok, run.error
    return run, run.save(tmp_path_factory.mktemp("runs") / "image_to_3d")


def test_the_stereo_pair_becomes_a_grid_mesh_with_every_choice_in_the_trace(saved):
    run, run_dir = saved
    # then the result is the mesh, chosen by the organised-grid rule, and every stage is a step
    assert isinstance(run.value, Mesh) and run.value.method == "grid"
    tools = [s.tool for s in run.trace.steps]
    assert tools == ["depth_for", "point_cloud", "measure_points", "choose_mesher", "mesh", "export_mesh",
                     "export_mesh", "export_mesh", "render_mesh"]
    trace = json.loads((run_dir / "trace.json").read_text())
    depth, cloud, stats, choice = (trace["steps"][i]["output_json"] for i in range(4))
    assert depth["source"].startswith("stereo_depth")
    assert any("assumed horizontal field of view 60 deg" in a for a in cloud["assumptions"])
    assert any("disparity -> depth" in a for a in cloud["assumptions"])
    assert 0 < stats["missing_fraction"] < 0.5
    assert choice["method"] == "grid" and "cells missing" in choice["reasons"][-1]
    assert (run_dir / "trace.json").stat().st_size < 200_000  # summaries, not arrays


def test_the_run_folder_holds_the_files_and_the_report_shows_the_preview(saved):
    _, run_dir = saved
    for fmt in ("ply", "obj", "glb"):
        assert (run_dir / "exports" / f"mesh.{fmt}").stat().st_size > 100_000
    report = (run_dir / "report.html").read_text()
    assert 'href="exports/mesh.glb" download' in report
    assert "artifacts/step009.png" in report  # the render_mesh preview
    assert (run_dir / "artifacts" / "step002.png").is_file()  # the point cloud's picture


def test_one_photograph_without_a_depth_model_fails_naming_what_to_configure(pair):
    reg = Registry()
    register_builtin(reg)
    run = vistrace.run(library()["image_to_3d"], registry=reg, cache=False, left=pair[0])
    assert not run.ok and run.error.where.line == 7
    assert "no monocular depth model is configured" in run.error.message
    assert "docs/adapters.md" in run.error.hint


def test_a_saved_run_replays_identically(saved):
    from vistrace.runfolder import replay

    _, run_dir = saved
    result = replay(run_dir, cache=False)
    assert result.identical, result.differences
