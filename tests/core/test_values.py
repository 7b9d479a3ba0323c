"""Given the value types, when programs and tools use them, then they stay immutable, typed and exact."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage

from vistrace.values import (Answer, Box, DepthMap, Detections, Image, Mask, TextLine, TextLines, fingerprint,
                             summarize, to_jsonable)
from vistrace.values.codec import dumps, loads


@pytest.fixture
def image() -> Image:
    arr = np.arange(120 * 200 * 3, dtype=np.uint32).reshape(120, 200, 3) % 251
    return Image(PILImage.fromarray(arr.astype(np.uint8)), source="ramp.png")


@pytest.fixture
def dets() -> Detections:
    return Detections([Box(10, 10, 50, 60, "cat", 0.9), Box(100, 20, 180, 110, "dog", 0.4),
                       Box(60, 5, 90, 30, "cat", 0.7)], query="cat,dog", image_size=(200, 120))


@pytest.mark.parametrize("value, field", [
    (Box(0, 0, 1, 1), "x1"), (Detections([]), "boxes"), (TextLines([]), "lines"), (Answer(1), "value"),
])
def test_values_are_immutable(value, field):
    with pytest.raises(AttributeError, match="immutable"):
        setattr(value, field, None)


def test_arrays_inside_values_are_read_only():
    m = Mask(np.zeros((4, 4), bool))
    with pytest.raises(ValueError):
        m.array[0, 0] = True


@pytest.mark.parametrize("coords", [(5, 0, 1, 1), (0, 5, 1, 1), (float("nan"), 0, 1, 1)])
def test_invalid_boxes_are_rejected(coords):
    with pytest.raises(ValueError):
        Box(*coords)


def test_detections_filter_select_and_pick(dets):
    assert dets.label("cat").count == 2 and dets.label("CAT, dog").count == 3
    assert dets.above(0.5).labels == ["cat", "cat"]
    assert dets[[True, False, True]].labels == ["cat", "cat"]
    assert dets.largest().label == "dog" and dets.leftmost().x1 == 10 and dets.best().score == 0.9
    assert dets.left_of(dets[1]).count == 2 and dets.right_of(dets[0]).count == 2
    assert dets.sorted_by("x").labels == ["dog", "cat", "cat"]
    assert (dets + dets.label("dog")).count == 4
    assert dets.nms(0.1, per_label=False).count == 3
    with pytest.raises(ValueError, match="no detections"):
        Detections([], query="zebra").largest()
    with pytest.raises(IndexError, match="out of range"):
        dets[7]


def test_crop_remembers_its_place_and_maps_boxes_back(image):
    crop = image.crop(Box(50, 20, 150, 100), out_size=(200, 160))  # 2x zoom
    assert crop.is_crop and crop.scale == (2.0, 2.0) and crop.offset == (50.0, 20.0)
    found = Box(20, 40, 60, 80, "thing")  # in the crop's pixels
    assert crop.to_root(found).xyxy == (60.0, 40.0, 80.0, 60.0)
    assert crop.from_root(crop.to_root(found)) == found
    inner = crop.crop(Box(60, 40, 100, 80))  # crop of a crop, given in root pixels
    assert inner.region().xyxy == pytest.approx((60, 40, 100, 80))
    assert inner.root_size == image.size


def test_codec_round_trips_every_value(image, dets):
    values = [image.crop(Box(1, 2, 30, 40)), dets, Box(1, 2, 3, 4, "x", 0.5),
              TextLines([TextLine("TOTAL 9.00", Box(0, 0, 50, 10), 0.98, (TextLine("TOTAL", Box(0, 0, 20, 10)),))]),
              Mask(np.eye(5, dtype=bool), "diag", 0.5),
              DepthMap(np.linspace(0, 1, 12).reshape(3, 4), "larger_is_nearer", "relative"),
              Answer(True, (Box(1, 1, 2, 2),), (1, 2), "found"), {"a": [1, (2, 3)], "b": None}]
    for v in values:
        back = loads(dumps(v))
        assert back == v and type(back) is type(v)
        assert fingerprint(back) == fingerprint(v)


def test_fingerprint_follows_content_not_names(image):
    other = Image(image.pil.copy(), source="renamed.png")
    assert fingerprint(other) == fingerprint(image)
    assert fingerprint(image.crop(Box(0, 0, 10, 10))) != fingerprint(image)


def test_summaries_and_json_are_short_and_plain(dets, image):
    assert summarize(dets).startswith("3 detections: cat [10,10,50,60] 0.90")
    assert len(summarize(list(range(1000)))) <= 200
    assert to_jsonable({"d": dets})["d"]["boxes"][0]["label"] == "cat"
    assert image.summary() == "ramp.png 200x120"


def test_values_draw_on_the_root_image(image, dets):
    drawn = dets.draw(image.pil)
    assert drawn.size == image.size and drawn is not image.pil
    assert np.asarray(drawn).tolist() != np.asarray(image.pil).tolist()
    depth = DepthMap(np.linspace(0, 1, 12).reshape(3, 4), "larger_is_farther").draw()
    assert np.asarray(depth)[0, 0, 0] == 255  # near is bright whatever the convention


def test_depth_map_states_which_way_is_near():
    near_is_big = DepthMap(np.array([[1.0, 0.0]]), "larger_is_nearer")
    assert near_is_big.nearer(Box(0, 0, 1, 1), Box(1, 0, 2, 1))
    far_is_big = DepthMap(np.array([[1.0, 0.0]]), "larger_is_farther")
    assert not far_is_big.nearer(Box(0, 0, 1, 1), Box(1, 0, 2, 1))
    with pytest.raises(ValueError, match="convention"):
        DepthMap(np.zeros((2, 2)), "up")
