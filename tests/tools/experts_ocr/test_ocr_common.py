"""Reading order, rotation arithmetic and the measures (no models, no data)."""

from __future__ import annotations

import numpy as np
import pytest

from vistrace.tools.experts.ocr_common import (
    Segment, amount_found, cer, group_rows, levenshtein, lines_from_segments, normalize_amount, rotate_back)


@pytest.mark.parametrize("a,b,d", [("", "", 0), ("abc", "", 3), ("", "ab", 2), ("kitten", "sitting", 3),
                                   ("flaw", "lawn", 2), ("same", "same", 0), ("ab", "ba", 2)])
def test_levenshtein(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


def test_cer_collapses_spaces_and_blank_lines():
    ref = "The quick brown\n\nfox."
    assert cer("The  quick brown\nfox.", ref) == 0.0
    assert cer("The quick brown\nfax.", ref) == pytest.approx(1 / len("The quick brown\nfox."))
    assert cer("", ref) == 1.0


@pytest.mark.parametrize("total,text,found", [
    ("RM 3.90", "CASH 3.90", True), ("$8.20", "TOTAL 8. 20", True), ("33.90", "TOTAL RM33.90", True),
    ("3.90", "TOTAL 13.90", False), ("3.90", "3.905", False), ("1,234.50", "Total 1234.50", True),
    ("1234.50", "Total 1,234.50", True), ("RM96.20", "96,20", False), ("4.80", "no amount", False)])
def test_amount_found(total, text, found):
    assert amount_found(total, text) is found


def test_normalize_amount():
    assert normalize_amount("RM 3.90") == "3.90" and normalize_amount("$8.20") == "8.20"
    assert normalize_amount(" 1,234.50 ") == "1234.50"


def seg(text, x1, y1, x2, y2, conf=0.9):
    return Segment(text, (x1, y1, x2, y2), conf)


def test_rows_join_label_and_amount_and_keep_reading_order():
    segs = [seg("33.90", 300, 102, 360, 121), seg("ITEM", 10, 60, 80, 80), seg("TOTAL", 10, 100, 70, 120),
            seg("RM", 250, 101, 290, 121), seg("HEADER", 100, 10, 200, 40)]
    lines = lines_from_segments(segs)
    assert [ln.text for ln in lines] == ["HEADER", "ITEM", "TOTAL RM 33.90"]
    total = lines[2]
    assert total.box.xyxy == (10, 100, 360, 121)
    assert [w.text for w in total.words] == ["TOTAL", "RM", "33.90"]


def test_adjacent_lines_that_touch_stay_apart():
    # phototest: consecutive lines' boxes overlap by ~5 px of ~39 px
    rows = group_rows([seg("one", 30, 84, 585, 125), seg("two", 31, 120, 623, 159), seg("three", 33, 156, 226, 190)])
    assert [[s.text for s in r] for r in rows] == [["one"], ["two"], ["three"]]


def test_slanted_line_follows_its_nearest_segment():
    # a line drifting down 12 px across the page, and the next line below its left end
    rows = group_rows([seg("a", 0, 100, 100, 120), seg("b", 110, 106, 210, 126), seg("c", 220, 112, 320, 132),
                       seg("next", 0, 130, 100, 150)])
    assert [[s.text for s in r] for r in rows] == [["a", "b", "c"], ["next"]]


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate_back_inverts_rot90(k):
    img = np.zeros((40, 100), np.uint8)   # H=40, W=100
    img[5:15, 60:90] = 1                 # a box x 60..90, y 5..15
    turned = np.rot90(img, k)
    ys, xs = np.nonzero(turned)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert rotate_back(box, k, 100, 40) == pytest.approx((60, 5, 90, 15))
