"""A hand-built run over a real photograph: detections, a crop, a detection inside the crop, a mask,
a depth map, a scalar, and a failing step."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage
from skimage import data as skdata

from vistrace.errors import Location, ToolError
from vistrace.trace import Recorder
from vistrace.values import Answer, Box, DepthMap, Detections, Image, Mask

PROGRAM = """\
BOX0=LOC(image=IMAGE,object='face')
IMAGE0=CROP(image=IMAGE,box=BOX0)
BOX1=LOC(image=IMAGE0,object='eye')
MASK0=SEG(image=IMAGE,box=BOX0)
DEPTH0=DEPTH(image=IMAGE)
ANSWER0=COUNT(box=BOX1)
ANSWER1=VQA(image=IMAGE0,question='<script>alert(1)</script>')
"""


@pytest.fixture(scope="session")
def photo() -> Image:
    """The scikit-image astronaut, enlarged to 1200x1000 so artifacts must be downscaled."""
    pil = PILImage.fromarray(skdata.astronaut()).resize((1200, 1000), PILImage.Resampling.BICUBIC)
    return Image(pil, source="astronaut.png")


@pytest.fixture()
def recorder(photo: Image) -> Recorder:
    rec = Recorder(program=PROGRAM, name="astronaut <demo>", style="visprog", version="test")
    rec.set_inputs({"image": photo, "question": "How many eyes <b>are</b> visible?"})

    s1 = rec.begin(call="LOC", tool="detect", args={"image": photo, "object": "face"}, line=1, col=0,
                   source="BOX0=LOC(image=IMAGE,object='face')", target="BOX0")
    face = Box(360, 100, 560, 330, "face", 0.91)
    dets = Detections([face, Box(700, 500, 900, 800, "face", 0.32)], "face", photo.size)
    rec.finish(s1, dets, {"backend": "owlvit", "model": "google/owlvit-base-patch32", "version": "rev-abc",
                          "reason": "open-vocabulary query 'face' is not a COCO class"})

    s2 = rec.begin(call="CROP", tool="crop", args={"image": photo, "box": face}, line=2, col=0,
                   source="IMAGE0=CROP(image=IMAGE,box=BOX0)", target="IMAGE0")
    crop = photo.crop(face.expand(1.5), out_size=(448, 448))
    rec.finish(s2, crop, cache_hit=True)

    s3 = rec.begin(call="LOC", tool="detect", args={"image": crop, "object": "eye"}, line=3, col=0,
                   source="BOX1=LOC(image=IMAGE0,object='eye')", target="BOX1")
    eyes = crop.to_root(Detections([Box(120, 150, 180, 200, "eye", 0.8), Box(260, 150, 320, 200, "eye", 0.7)], "eye"))
    rec.finish(s3, eyes, {"backend": "owlvit", "model": "google/owlvit-base-patch32", "version": "rev-abc"})

    s4 = rec.begin(call="SEG", tool="segment", args={"image": photo, "box": face}, line=4, col=0, target="MASK0")
    m = np.zeros((photo.height, photo.width), dtype=bool)
    m[120:320, 380:540] = True
    rec.finish(s4, Mask(m, "face", 0.88), {"backend": "sam"})

    s5 = rec.begin(call="DEPTH", tool="depth", args={"image": photo}, line=5, col=0, target="DEPTH0")
    yy = np.linspace(0, 1, photo.height, dtype=np.float32)[:, None] * np.ones((1, photo.width), np.float32)
    rec.finish(s5, DepthMap(yy, "larger_is_nearer"), {"backend": "depth-anything"})

    s6 = rec.begin(call="COUNT", tool="count", args={"box": eyes}, line=6, col=0, target="ANSWER0")
    rec.finish(s6, 2)

    s7 = rec.begin(call="VQA", tool="ask", args={"image": crop, "question": "<script>alert(1)</script>"},
                   line=7, col=8, source="ANSWER1=VQA(image=IMAGE0,question='<script>alert(1)</script>')",
                   target="ANSWER1")
    err = ToolError("VQA model refused the question <script>x</script>", where=Location(line=7, col=8),
                    hint="ask a shorter question")
    rec.fail(s7, err, {"backend": "blip"})
    rec.set_error(err)
    rec.result_value = Answer(2, boxes=tuple(eyes), steps=(3, 6))
    return rec
