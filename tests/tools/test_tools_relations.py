"""Spatial and scale judgements (VPEval, GenEval, T2I-CompBench) on the COCO fixture's boxes."""

from __future__ import annotations

import pytest

from vistrace.errors import ToolArgumentError
from vistrace.tools.builtin.relations import (
    find_pair, geneval_position, scale, spatial, spatial_keyword, t2i_spatial_score, vpeval_scale_holds,
    vpeval_scale_keyword, vpeval_spatial_holds, vpeval_spatial_keyword,
)
from vistrace.values import Box, Detections


# GenEval ----------------------------------------------------------------------------------------

def test_geneval_left_cat_is_left_of_right_cat(cats):
    # given the COCO ground-truth cats (left cat centre x=168, right cat x=494)
    left, right = cats[0], cats[1]
    # when GenEval's relative position is computed for left relative to right
    pos = geneval_position(left, right)
    # then the shrunk, normalised x offset is about -0.802 and only "left of" holds
    assert abs(pos["dx"] + 0.802) < 0.01
    assert pos["dy"] == 0.0  # |dy| = 64 px < 0.1*(415+343.75): shrunk to 0
    assert pos["relations"] == ["left of"]


def test_geneval_is_antisymmetric(cats):
    pos = geneval_position(cats[1], cats[0])
    assert abs(pos["dx"] - 0.802) < 0.01
    assert pos["relations"] == ["right of"]


def test_geneval_overlapping_centres_give_no_relation():
    a, b = Box(0, 0, 100, 100), Box(5, 5, 105, 105)
    assert geneval_position(a, b) == {"dx": 0.0, "dy": 0.0, "relations": []}


def test_geneval_diagonal_offset_can_hold_two_relations():
    pos = geneval_position(Box(0, 0, 10, 10), Box(100, 100, 110, 110))
    assert pos["relations"] == ["left of", "above"]


# VPEval -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("phrase, keyword", [
    ("left of", "left"), ("to the right of", "right"), ("above", "above"), ("below", "below"),
    ("in front of", "front"), ("behind", "behind"), ("on the left above", "left"),  # VPEval's order
    ("on the bottom of", None), ("on top of", None), ("near", None), ("on", None),
])
def test_vpeval_spatial_keyword_follows_published_substring_order(phrase, keyword):
    assert vpeval_spatial_keyword(phrase) == keyword


@pytest.mark.parametrize("phrase, keyword", [
    ("smaller", "smaller"), ("is small", "smaller"), ("bigger than", "bigger"), ("same size", "same"),
    ("larger", None), ("taller", None),
])
def test_vpeval_scale_keyword(phrase, keyword):
    assert vpeval_scale_keyword(phrase) == keyword


def test_vpeval_centre_rule_on_coco_cats_both_orders(cats):
    left, right = cats[0], cats[1]
    assert vpeval_spatial_holds(left, right, "left")
    assert not vpeval_spatial_holds(right, left, "left")
    assert vpeval_spatial_holds(right, left, "right")
    # right cat's centre is 64 px higher than the left cat's
    assert vpeval_spatial_holds(right, left, "above")
    assert vpeval_spatial_holds(left, right, "below")


def test_vpeval_centre_rule_keeps_the_5px_margin():
    a = Box(0, 0, 10, 10)
    assert not vpeval_spatial_holds(Box(5, 0, 15, 10), a, "right")   # 5 px: not > 5
    assert vpeval_spatial_holds(Box(5.5, 0, 15.5, 10), a, "right")   # 5.5 px


def test_vpeval_area_rule_on_coco_cats_both_ways(cats):
    left, right = cats[0], cats[1]  # areas 125019 and 100547 px: ratio 0.80
    assert vpeval_scale_holds(left, right, "bigger")
    assert vpeval_scale_holds(right, left, "smaller")
    assert not vpeval_scale_holds(right, left, "bigger")
    assert not vpeval_scale_holds(left, right, "same")


def test_vpeval_area_rule_same_band_is_5_percent():
    ref = Box(0, 0, 100, 100)
    assert vpeval_scale_holds(Box(0, 0, 100, 104), ref, "same")
    assert not vpeval_scale_holds(Box(0, 0, 100, 106), ref, "same")
    assert vpeval_scale_holds(Box(0, 0, 100, 106), ref, "bigger")


def test_find_pair_never_pairs_a_box_with_itself(cats):
    one = Detections([cats[0]])
    # VPEval's defect: the single cat would be "the same size" as itself
    assert find_pair(one, one, lambda s, r: vpeval_scale_holds(s, r, "same")) is None


# T2I-CompBench ----------------------------------------------------------------------------------

def test_t2i_score_on_coco_cats(cats):
    left, right = cats[0], cats[1]
    assert t2i_spatial_score(left, right, "left") == 1.0     # no overlap
    assert t2i_spatial_score(left, right, "right") == 0.0
    assert t2i_spatial_score(left, right, "above") == 0.0    # x dominates
    assert t2i_spatial_score(left, right, "near") == 1.0     # |dy| = 64 < 150


def test_t2i_score_penalises_overlap():
    a, b = Box(0, 0, 100, 10), Box(50, 0, 150, 10)  # IoU = 1/3
    assert t2i_spatial_score(a, b, "left") == pytest.approx(0.1 / (1 / 3))


def test_t2i_near_decays_beyond_150px():
    assert t2i_spatial_score(Box(0, 0, 10, 10), Box(300, 600, 310, 610), "near") == pytest.approx(150 / 600)


# tools ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("judge", ["vpeval", "geneval", "t2i"])
def test_spatial_tool_reads_a_rel_b_on_coco_cats(cats, judge):
    left, right = cats[0], cats[1]
    assert spatial(a=left, b=right, relation="left of", judge=judge) is True
    assert spatial(a=right, b=left, relation="left of", judge=judge) is False
    assert spatial(a=right, b=left, relation="to the right of", judge=judge) is True


def test_spatial_tool_vpeval_uses_any_pair(cats, remotes):
    # some remote is left of some cat (remote x=108 < left cat x=168)
    assert spatial(a=remotes, b=cats, relation="left") is True
    assert spatial(a=cats, b=remotes, relation="above") is False  # every cat is lower than every remote
    assert spatial(a=cats, b=remotes, relation="below") is True


def test_spatial_tool_with_same_detections_excludes_self_pairs(cats):
    assert spatial(a=cats, b=cats, relation="left") is True   # left cat vs right cat
    one = cats[:1]
    assert spatial(a=one, b=one, relation="left") is False


def test_spatial_tool_accepts_synonyms_and_near_for_t2i(cats):
    assert spatial(a=cats[1], b=cats[0], relation="on top of") is True  # 64 px higher
    assert spatial(a=cats[0], b=cats[1], relation="next to", judge="t2i") is True


@pytest.mark.parametrize("relation, judge, message", [
    ("on", "vpeval", "names no direction"),
    ("in front of", "vpeval", "needs depth"),
    ("behind", "geneval", "needs depth"),
    ("near", "vpeval", "judged only by judge='t2i'"),
])
def test_spatial_tool_rejects_relations_it_cannot_judge(cats, relation, judge, message):
    with pytest.raises(ToolArgumentError, match=message):
        spatial(a=cats[0], b=cats[1], relation=relation, judge=judge)


def test_spatial_tool_with_empty_detections_is_false(cats):
    for judge in ("vpeval", "geneval", "t2i"):
        assert spatial(a=Detections([]), b=cats, relation="left", judge=judge) is False


def test_spatial_unknown_judge_is_rejected_by_validation(cats):
    with pytest.raises(ToolArgumentError, match="judge"):
        spatial(a=cats[0], b=cats[1], relation="left", judge="clip")


def test_scale_tool_both_ways_on_coco_cats(cats):
    left, right = cats[0], cats[1]
    assert scale(a=left, b=right, relation="bigger") is True
    assert scale(a=right, b=left, relation="bigger") is False
    assert scale(a=right, b=left, relation="smaller") is True
    assert scale(a=left, b=right, relation="larger than") is True
    assert scale(a=left, b=right, relation="same size") is False


def test_scale_tool_never_compares_a_box_with_itself(cats):
    one = cats[:1]
    assert scale(a=one, b=one, relation="same") is False


@pytest.mark.parametrize("relation", ["taller", "wider", ""])
def test_scale_tool_rejects_non_size_relations(cats, relation):
    with pytest.raises(ToolArgumentError, match="scale relation"):
        scale(a=cats[0], b=cats[1], relation=relation)


def test_relation_literal_checks_report_before_running(bare_registry):
    check = bare_registry.signature("spatial").literal_checks["relation"]
    assert check("left of") is None
    assert "names no direction" in check("on")
    assert bare_registry.signature("scale").literal_checks["relation"]("taller").startswith("scale relation")
    assert spatial_keyword("beneath") == "below"
