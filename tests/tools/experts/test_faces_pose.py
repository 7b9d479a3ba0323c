"""BlazeFace behind ``detect_faces`` and MoveNet behind ``pose``, on skimage's astronaut (one face, one person)."""

from __future__ import annotations

import numpy as np
import pytest

from vistrace.config import device
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.tools.experts import blazeface, movenet
from vistrace.tools.experts.blazeface import BlazeFaceBackend, anchors
from vistrace.tools.experts.movenet import MoveNetBackend
from vistrace.tools.model_cache import MODELS
from vistrace.values import Box, Image, Keypoints
from vistrace.values.keypoints import COCO_KEYPOINTS

from ..conftest import COCO_DIR, DATA
from .conftest import need_model

FACE_REGION = Box(170, 30, 290, 190)  # where the astronaut's face is, by eye, in the 512x512 image


@pytest.fixture
def faces() -> BlazeFaceBackend:
    need_model("blazeface")
    return BlazeFaceBackend()


@pytest.fixture
def poses() -> MoveNetBackend:
    need_model("movenet")
    return MoveNetBackend()


def call(reg, tool_name, /, **args):
    return reg.get(tool_name).invoke(args, reg)[0]


def test_declarations():
    (f,) = blazeface.backends()
    (p,) = movenet.backends()
    assert (f.tool, f.name, p.tool, p.name) == ("detect_faces", "blazeface", "pose", "movenet")


def test_anchor_layout_is_16x16x2_then_8x8x6():
    a = anchors(256)
    assert a.shape == (896, 2)
    assert a[:3].tolist() == [[8, 8], [8, 8], [24, 8]]          # stride 16, two per cell
    assert a[511].tolist() == [248, 248]
    assert a[512:519].tolist() == [[16, 16]] * 6 + [[48, 16]]   # stride 32, six per cell
    assert a[-1].tolist() == [240, 240]


def test_decode_centres_boxes_on_their_anchor():
    raw = np.zeros((896, 16))
    raw[0, :4] = [2, -3, 20, 10]           # centre offset (2, -3), size 20x10
    raw[0, 4:6] = [1, 1]                    # first landmark offset
    logits = np.full(896, -10.0)
    logits[0] = 0.0
    boxes, scores, marks = blazeface.decode(raw, logits)
    np.testing.assert_allclose(boxes[0], [8 + 2 - 10, 8 - 3 - 5, 8 + 2 + 10, 8 - 3 + 5])
    np.testing.assert_allclose(marks[0, 0], [9, 9])
    assert scores[0] == pytest.approx(0.5) and scores[1] < 1e-4


def test_one_face_on_the_astronaut(faces, astronaut):
    found = faces.run(image=astronaut)
    assert len(found) == 1, found.summary()
    face = found[0]
    assert face.label == "face" and 0.75 <= face.score <= 1
    assert FACE_REGION.x1 - 10 <= face.x1 and face.x2 <= FACE_REGION.x2 + 10
    assert FACE_REGION.y1 - 10 <= face.y1 and face.y2 <= FACE_REGION.y2 + 10
    assert FACE_REGION.contains(*face.center) and face.width > 80 and face.height > 80


def test_no_face_on_cats_or_dogs(faces):
    for path in (COCO_DIR / "000000039769.png", DATA / "vpeval" / "examples" / "dogs.jpg"):
        if not path.exists():
            pytest.skip(f"shared data not found at {path}")
        assert len(faces.run(image=Image.open(path))) == 0, path.name


def test_faces_in_a_crop_map_back_to_root_pixels(faces, astronaut):
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(faces)
    full = call(reg, "detect_faces", image=astronaut)
    crop = astronaut.crop(Box(100, 0, 400, 300))
    in_crop = call(reg, "detect_faces", image=crop)
    assert len(full) == len(in_crop) == 1
    assert in_crop[0].iou(full[0]) > 0.8


def test_faces_second_call_does_not_reload(faces, astronaut):
    faces.run(image=astronaut)
    faces.run(image=astronaut)
    assert MODELS.loads[f"tfjs:blazeface:{device()}"] == 1


def test_pose_on_the_astronaut(poses, astronaut):
    kp = poses.run(image=astronaut)
    assert isinstance(kp, Keypoints) and list(kp.points) == list(COCO_KEYPOINTS)
    for name in ("nose", "left_eye", "right_eye"):
        x, y, s = kp.point(name)
        assert FACE_REGION.contains(x, y) and s > 0.3, (name, x, y, s)
    face_bottom = FACE_REGION.y2
    for name in ("left_shoulder", "right_shoulder"):
        x, y, s = kp.point(name)
        assert y > face_bottom and s > 0.3, (name, x, y, s)
    # she faces the camera: her left eye and shoulder are on the image's right
    assert kp.point("left_eye")[0] > kp.point("right_eye")[0]
    assert kp.point("left_shoulder")[0] > kp.point("right_shoulder")[0]
    assert 0 < kp.score <= 1


def test_pose_in_a_crop_maps_back_to_root_pixels(poses, astronaut):
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(poses)
    crop = astronaut.crop(Box(0, 0, 512, 400))
    kp = call(reg, "pose", image=crop)
    x, y, _ = kp.point("nose")
    assert FACE_REGION.contains(x, y)


@pytest.mark.parametrize("backend_cls, name", [(BlazeFaceBackend, "blazeface"), (MoveNetBackend, "movenet")])
def test_missing_model_names_the_fetch_command(monkeypatch, tmp_path, backend_cls, name):
    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(tmp_path / "nothing"))
    avail = backend_cls().availability()
    assert not avail.ok and str(tmp_path / "nothing") in avail.reason
    assert avail.fix == f"vistrace models fetch {name}"
