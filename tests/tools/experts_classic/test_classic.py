"""Given no model weights at all, when images are segmented (GrabCut) or a stereo pair is matched
(StereoSGBM), then the classic algorithms give real, measured results."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

import vistrace
from vistrace.errors import BackendUnavailable, ToolArgumentError
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.tools.experts.grabcut import GrabCutBackend
from vistrace.values import Box, Image, Mask


@pytest.fixture
def registry() -> Registry:
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(GrabCutBackend())
    return reg


def synthetic_scene(seed: int = 0) -> tuple[Image, np.ndarray]:
    """A textured background with a red disk (known mask) — the ground truth is exact."""
    rng = np.random.default_rng(seed)
    h, w = 240, 320
    bg = rng.integers(60, 200, size=(h, w, 3)).astype(np.uint8)
    bg[..., 0] //= 2  # less red in the background
    yy, xx = np.mgrid[:h, :w]
    disk = (xx - 170) ** 2 + (yy - 120) ** 2 < 60 ** 2
    img = bg.copy()
    img[disk] = (220, 30, 30) + rng.integers(-15, 15, size=(disk.sum(), 3))
    return Image(PILImage.fromarray(img.clip(0, 255).astype(np.uint8)), source="synthetic disk"), disk


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grabcut_segments_the_object_in_the_box(registry):
    image, truth = synthetic_scene()
    run = vistrace.run("m = segment(image, box(95, 40, 245, 200, 'disk'))\nresult = m.area", registry=registry,
                       cache=False, image=image)
    assert run.ok, run.error
    mask = run.recorder.values[2]
    assert iou(mask.array, truth) > 0.9
    assert run.trace.steps[1].backend == "grabcut"


def test_grabcut_on_a_crop_returns_the_crop_grid(registry):
    image, truth = synthetic_scene(1)
    crop = image.crop(Box(80, 30, 260, 210))
    mask = registry.get("segment")(registry, image=crop, box=Box(95, 40, 245, 200))
    assert (mask.width, mask.height) == crop.size
    assert iou(mask.array, truth[30:210, 80:260]) > 0.9


def test_stereo_depth_on_the_middlebury_motorcycle(registry):
    skdata = pytest.importorskip("skimage.data")
    left, right, truth = skdata.stereo_motorcycle()
    dm = registry.get("stereo_depth")(registry, left=Image(PILImage.fromarray(left)),
                                      right=Image(PILImage.fromarray(right)))
    assert dm.convention == "larger_is_nearer" and dm.array.shape == truth.shape
    valid = np.isfinite(truth) & np.isfinite(dm.array)
    coverage = valid.sum() / np.isfinite(truth).sum()
    bad = float((np.abs(dm.array[valid] - truth[valid]) > 2).mean())
    # measured: 87 % of ground-truth pixels matched, 6 % of them off by more than 2 px (bad-2 rate)
    assert coverage > 0.8 and bad < 0.1


@pytest.mark.parametrize("kwargs, message", [
    ({"max_disparity": 0}, "max_disparity"), ({"block_size": 4}, "block_size"),
])
def test_stereo_depth_rejects_bad_settings(registry, kwargs, message):
    image, _ = synthetic_scene()
    with pytest.raises(ToolArgumentError, match=message):
        registry.get("stereo_depth")(registry, left=image, right=image, **kwargs)


def test_stereo_depth_needs_images_of_one_size(registry):
    image, _ = synthetic_scene()
    small = image.crop(Box(0, 0, 100, 100))
    with pytest.raises(ToolArgumentError, match="same size"):
        registry.get("stereo_depth")(registry, left=image, right=small)


def test_grabcut_refines_a_rough_mask(registry):
    """Given a rough mask (a square around the disk, no box), GrabCut cuts it down to the disk."""
    image, truth = synthetic_scene(2)
    rough = np.zeros_like(truth)
    rough[50:190, 100:240] = True
    mask = registry.get("segment")(registry, image=image, mask=Mask(rough, label="disk"))
    assert iou(mask.array, truth) > 0.9 and iou(rough, truth) < 0.75
    assert mask.label == "disk"


def test_grabcut_with_a_box_and_a_point(registry):
    image, truth = synthetic_scene(3)
    mask = registry.get("segment")(registry, image=image, box=Box(95, 40, 245, 200), point=[170, 120])
    assert iou(mask.array, truth) > 0.9


def test_a_point_alone_is_refused_by_grabcut_with_the_reason(registry):
    image, _ = synthetic_scene()
    with pytest.raises(BackendUnavailable, match="needs a box or a rough mask"):
        registry.get("segment")(registry, image=image, point=[170, 120])


@pytest.mark.parametrize("kwargs, message", [
    ({}, "needs a prompt"),
    ({"point": [1.0, 2.0, 3.0]}, r"point must be \[x, y\]"),
    ({"mask": Mask(np.ones((10, 10), bool))}, "same pixel grid"),
])
def test_segment_rejects_bad_prompts(registry, kwargs, message):
    image, _ = synthetic_scene()
    with pytest.raises(ToolArgumentError, match=message):
        registry.get("segment")(registry, image=image, **kwargs)


@pytest.mark.parametrize("index, category", [(0, "remote"), (1, "remote"), (2, "couch"), (5, "cat")])
def test_grabcut_mask_areas_agree_with_coco_segmentation_areas(index, category):
    """Given the COCO fixture's boxes, when GrabCut segments each object, then the mask area is within 25 % of
    COCO's segmentation area (the 'area' field is the area of the annotated polygon mask).

    Measured (docs/benchmarks.md): remotes 1.09 / 0.98, couch 0.99, right cat 1.24 of COCO's area. GrabCut
    fails on the left cat (0.07: it hardly differs from the blanket in colour) and on the bed, whose box
    covers the whole picture and so leaves no background to model (0.39)."""
    import json

    from tests.conftest import shared
    from vistrace.tools import Registry
    from vistrace.tools.builtin import register_builtin

    ann = json.loads(shared("coco_fixture/000000039769_annotations.json").read_text())
    image = Image.open(shared("coco_fixture/000000039769.png"))
    a = ann["annotations"][index]
    assert a["category"] == category
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(GrabCutBackend())
    mask = reg.get("segment")(reg, image=image, box=Box(*a["bbox_xyxy"], label=category))
    assert 0.75 < mask.area / a["area"] < 1.3
