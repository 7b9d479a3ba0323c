from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from vistrace.trace import Recorder, render_artifacts
from vistrace.trace.artifacts import RootFinder, downscale
from vistrace.values import Box, Detections, Image


def _open(path: Path) -> PILImage.Image:
    with PILImage.open(path) as im:
        assert im.format == "PNG"
        im.load()
        return im.copy()


def test_given_a_run_when_rendering_then_each_drawable_step_gets_small_pngs(recorder, tmp_path):
    render_artifacts(recorder, tmp_path)
    steps = {s.id: s for s in recorder.trace.steps}

    assert steps[1].artifacts == ["artifacts/step001.png"]
    assert steps[2].artifacts == ["artifacts/step002.png", "artifacts/step002_region.png"]
    assert steps[3].artifacts == ["artifacts/step003.png"]
    assert steps[4].artifacts == ["artifacts/step004.png"]
    assert steps[5].artifacts == ["artifacts/step005.png"]
    assert steps[6].artifacts == []          # a scalar: no picture
    assert steps[7].artifacts == []          # failed: no picture
    for s in steps.values():
        for rel in s.artifacts:
            im = _open(tmp_path / rel)
            assert max(im.size) <= 768


def test_given_detections_when_drawn_then_the_overlay_is_the_root_photo_with_boxes(recorder, photo, tmp_path):
    render_artifacts(recorder, tmp_path)
    overlay = _open(tmp_path / "artifacts/step001.png")
    assert overlay.size == (768, 640)                      # 1200x1000 scaled, aspect kept
    plain = photo.pil.resize(overlay.size, PILImage.Resampling.LANCZOS)
    diff = np.abs(np.asarray(overlay, np.int16) - np.asarray(plain, np.int16)).sum(axis=2)
    assert (diff > 60).mean() < 0.1                        # mostly the photo ...
    assert (diff > 60).any()                               # ... with boxes on it


def test_given_a_crop_when_drawn_then_its_pixels_are_saved_and_its_region_outlined(recorder, tmp_path):
    render_artifacts(recorder, tmp_path)
    crop = recorder.values[2]
    assert _open(tmp_path / "artifacts/step002.png").size == crop.size
    assert _open(tmp_path / "artifacts/step002_region.png").size == (768, 640)


def test_given_detections_found_in_a_crop_when_drawn_then_they_land_on_the_root(recorder, tmp_path):
    render_artifacts(recorder, tmp_path)
    assert _open(tmp_path / "artifacts/step003.png").size == (768, 640)


def test_given_odd_values_when_rendering_then_they_are_skipped(photo, tmp_path):
    rec = Recorder(program="x = odd(image)")
    rec.set_inputs({"image": photo})
    sid = rec.begin(call="odd", tool="odd", args={"image": photo})
    rec.finish(sid, object())
    sid2 = rec.begin(call="odd", tool="odd", args={"image": photo})
    rec.finish(sid2, {"a": [1, 2]})
    render_artifacts(rec, tmp_path)
    assert all(s.artifacts == [] for s in rec.trace.steps)


def test_given_a_crop_of_an_unknown_root_when_drawn_then_it_is_placed_on_grey(photo):
    crop = photo.crop(Box(100, 100, 400, 300))
    finder = RootFinder()                                   # knows no roots
    canvas = finder.canvas_for(crop)
    assert canvas.size == photo.size
    assert canvas.getpixel((5, 5)) == (128, 128, 128)
    assert canvas.getpixel((250, 200)) == photo.pil.getpixel((250, 200))


def test_given_two_roots_of_one_size_when_finding_a_crops_root_then_pixels_decide(photo):
    other = Image(photo.pil.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT), source="flipped.png")
    crop = other.crop(Box(10, 10, 300, 200))
    finder = RootFinder()
    finder.add(photo)
    finder.add(other)
    assert finder.root_of(crop) is other


def test_given_only_detections_args_when_drawn_then_the_input_image_is_the_canvas(photo, tmp_path):
    rec = Recorder(program="y = keep(dets)")
    rec.set_inputs({"image": photo})
    dets = Detections([Box(10, 10, 100, 100, "cat", 0.9)], "cat", photo.size)
    sid = rec.begin(call="keep", tool="keep", args={"dets": dets})
    rec.finish(sid, dets)
    render_artifacts(rec, tmp_path)
    assert rec.trace.steps[0].artifacts == ["artifacts/step001.png"]


def test_downscale_keeps_aspect_and_never_enlarges(photo):
    assert downscale(photo.pil).size == (768, 640)
    small = photo.pil.resize((300, 100))
    assert downscale(small).size == (300, 100)
    assert downscale(photo.pil.resize((100, 3000))).size == (26, 768)
