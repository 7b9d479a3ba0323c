"""crop (VisProg CROP), zoom (TextCoT) and the VisProg half-image crops, with crop provenance."""

from __future__ import annotations

import numpy as np
import pytest

from vistrace.errors import ToolArgumentError, ToolError
from vistrace.tools.builtin.image_ops import (
    crop, crop_above, crop_below, crop_left_of, crop_right_of, textcot_zoom_box, visprog_expand_box, zoom,
)
from vistrace.values import Box, Detections


def region(img) -> tuple[float, ...]:
    return tuple(round(v, 3) for v in img.region().xyxy)


# crop -------------------------------------------------------------------------------------------

def test_crop_with_expand_1_5_follows_visprog_integer_maths(make_image):
    # given a 640x480 image and a 100x60 box
    img = make_image(640, 480)
    # when CROP's factor 1.5 is applied
    out = crop(image=img, box=Box(100, 100, 200, 160), expand=1.5)
    # then half-extents are int(1.5*100/2)=75 and int(1.5*60/2)=45 around centre (150, 130)
    assert region(out) == (75, 85, 225, 175)
    assert out.size == (150, 90)


def test_crop_expansion_is_clamped_at_the_border(make_image):
    img = make_image(640, 480)
    out = crop(image=img, box=Box(0, 0, 40, 40), expand=1.5)
    # cx=20, dw=30 -> x1=max(0,-10)=0, x2=50
    assert region(out) == (0, 0, 50, 50)


def test_crop_without_expand_cuts_the_box_itself(make_image):
    img = make_image(640, 480)
    out = crop(image=img, box=Box(10, 20, 110, 70))
    assert region(out) == (10, 20, 110, 70)
    assert np.array_equal(out.array(), img.array()[20:70, 10:110])


def test_crop_uses_the_first_of_detections(make_image):
    img = make_image(640, 480)
    dets = Detections([Box(10, 20, 110, 70, "a", 0.9), Box(300, 300, 400, 400, "b", 0.5)])
    assert region(crop(image=img, box=dets)) == (10, 20, 110, 70)


def test_crop_with_empty_detections_returns_the_image_unchanged(make_image):
    img = make_image(640, 480)
    assert crop(image=img, box=Detections([]), expand=1.5) is img


def test_crop_of_a_crop_composes_provenance(make_image):
    # given a crop of the root image
    img = make_image(640, 480)
    first = crop(image=img, box=Box(100, 100, 400, 400))
    # when a root-coordinate box is cut from that crop
    box = Box(150, 200, 250, 260)
    second = crop(image=first, box=box)
    # then it lies where the box says in the root, with the same pixels as a direct crop
    assert region(second) == (150, 200, 250, 260)
    assert np.array_equal(second.array(), crop(image=img, box=box).array())
    # and a box found in it maps back to the root
    found = second.to_root(Box(10, 10, 20, 20))
    assert found.xyxy == (160, 210, 170, 220)


def test_crop_of_a_crop_expands_in_the_crops_own_pixels(make_image):
    img = make_image(640, 480)
    first = crop(image=img, box=Box(100, 100, 400, 400))
    out = crop(image=first, box=Box(150, 200, 250, 260), expand=1.5)
    # local box (50,100,150,160): dw=75, dh=45, centre (100,130) -> local (25,85,175,175)
    assert region(out) == (125, 185, 275, 275)


def test_crop_clips_to_the_area_a_crop_covers(make_image):
    img = make_image(640, 480)
    first = crop(image=img, box=Box(100, 100, 400, 400))
    out = crop(image=first, box=Box(0, 0, 200, 200))
    assert region(out) == (100, 100, 200, 200)


def test_crop_outside_the_image_is_a_tool_error(make_image):
    img = make_image(640, 480)
    first = crop(image=img, box=Box(100, 100, 400, 400))
    with pytest.raises(ToolError, match="does not overlap"):
        crop(image=first, box=Box(500, 420, 600, 470))


@pytest.mark.parametrize("expand", [0.0, -1.5])
def test_crop_rejects_non_positive_expand(make_image, expand):
    with pytest.raises(ToolArgumentError, match="expand must be > 0"):
        crop(image=make_image(64, 64), box=Box(1, 1, 10, 10), expand=expand)


def test_visprog_expand_box_matches_published_formula():
    assert visprog_expand_box((10, 10, 21, 31), (100, 100), 1.5) == (7, 5, 23, 35)


# zoom (TextCoT) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("box, expected", [
    (Box(0, 380, 40, 420), (0, 176, 448, 624)),          # left border: shifted right
    (Box(960, 380, 1000, 420), (552, 176, 1000, 624)),    # right border: shifted left
    (Box(480, 0, 520, 40), (276, 0, 724, 448)),           # top border: shifted down
    (Box(480, 760, 520, 800), (276, 352, 724, 800)),      # bottom border: shifted up
], ids=["left", "right", "top", "bottom"])
def test_zoom_near_a_border_shifts_a_448_square_inside(make_image, box, expected):
    # given a 1000x800 image and a small box touching one border
    img = make_image(1000, 800)
    # when zooming
    out = zoom(image=img, box=box)
    # then the 448 px square is shifted (not clipped) to lie inside the image
    assert region(out) == expected
    assert out.size == (448, 448)


def test_zoom_on_a_tiny_box_uses_the_448_minimum(make_image):
    img = make_image(1000, 800)
    out = zoom(image=img, box=Box(500, 400, 510, 405))
    assert out.size == (448, 448)
    assert out.region().cx == pytest.approx(505, abs=1)
    assert out.region().cy == pytest.approx(402.5, abs=1)


def test_zoom_in_a_small_image_returns_the_whole_image(make_image):
    img = make_image(300, 200)
    assert zoom(image=img, box=Box(100, 50, 150, 100)) is img


def test_zoom_on_a_large_box_takes_1_5_times_its_longer_side(make_image):
    img = make_image(1000, 800)
    out = zoom(image=img, box=Box(100, 100, 500, 400))
    # longer side 400 -> 600 px square, centred at (300, 250), shifted down to y=0
    assert region(out) == (0, 0, 600, 600)
    assert out.size == (600, 600)


def test_zoom_larger_than_the_image_height_returns_the_whole_image(make_image):
    img = make_image(1000, 800)
    assert zoom(image=img, box=Box(100, 100, 700, 300)) is img  # 1.5*600 = 900 > 800


def test_zoom_with_empty_detections_returns_the_whole_image(make_image):
    img = make_image(1000, 800)
    assert zoom(image=img, box=Detections([])) is img


def test_zoom_inside_a_crop_shifts_within_the_crops_area(make_image):
    img = make_image(1000, 800)
    part = crop(image=img, box=Box(100, 100, 700, 700))
    out = zoom(image=part, box=Box(110, 110, 120, 120))
    assert region(out) == (100, 100, 548, 548)
    assert out.to_root(Box(0, 0, 448, 448)).xyxy == (100, 100, 548, 548)


def test_textcot_zoom_box_is_none_when_the_square_does_not_fit():
    assert textcot_zoom_box(Box(0, 0, 10, 10), Box(0, 0, 447, 1000)) is None
    assert textcot_zoom_box(Box(0, 0, 10, 10), Box(0, 0, 448, 448)) == Box(0, 0, 448, 448)


# VisProg CROP_LEFTOF / RIGHTOF / ABOVE / BELOW ---------------------------------------------------

@pytest.mark.parametrize("fn, expected", [
    (crop_left_of, (0, 0, 150, 479)),
    (crop_right_of, (150, 0, 639, 479)),
    (crop_above, (0, 0, 639, 150)),
    (crop_below, (0, 150, 639, 479)),
], ids=["left_of", "right_of", "above", "below"])
def test_side_crops_split_through_the_box_centre(make_image, fn, expected):
    img = make_image(640, 480)
    assert region(fn(image=img, box=Box(100, 100, 200, 200))) == expected


@pytest.mark.parametrize("fn, expected", [
    (crop_left_of, (0, 0, 320, 479)),
    (crop_right_of, (320, 0, 639, 479)),
    (crop_above, (0, 0, 639, 240)),
    (crop_below, (0, 240, 639, 479)),
], ids=["left_half", "right_half", "top_half", "bottom_half"])
def test_side_crops_without_a_box_take_the_half_image(make_image, fn, expected):
    img = make_image(640, 480)
    assert region(fn(image=img, box=Detections([]))) == expected


def test_side_crop_on_coco_keeps_the_left_cat(coco_image, cats):
    # CROP_LEFTOF the right cat keeps the whole left cat
    out = crop_left_of(image=coco_image, box=cats[1])
    assert out.region().x2 == int(cats[1].cx)
    assert cats[0].x2 <= out.region().x2


def test_side_crop_of_a_crop_is_relative_to_that_crop(make_image):
    img = make_image(640, 480)
    part = crop(image=img, box=Box(100, 100, 300, 300))
    out = crop_right_of(image=part, box=Box(150, 150, 170, 170))
    # local centre x = 60; local window [60, 0, 199, 199] -> root [160, 100, 299, 299]
    assert region(out) == (160, 100, 299, 299)
