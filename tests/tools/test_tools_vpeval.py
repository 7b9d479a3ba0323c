"""VPEval modules as tools: objectEval, countEval, spatialEval, scaleEval, textEval, vqa."""

from __future__ import annotations

import pytest

from vistrace.errors import BackendUnavailable, ToolArgumentError
from vistrace.tools.builtin.vpeval import count_eval, parse_count_target, text_eval
from vistrace.values import Answer, Box, Detections


def call(reg, tool_name, /, **args):
    """Run a tool (or alias) of ``reg`` with ``reg`` as the context for nested calls."""
    return reg.get(tool_name).invoke(args, reg)[0]


# countEval --------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, expected", [
    ("==2", True), ("2", True), ("=2", True), (">1", True), (">=2", True), ("<3", True), ("<=2", True),
    ("!=0", True), ("==two", True), ("two", True), ("==TWO", True), (" >= 2 ", True),
    ("<2", False), ("<=1", False), ("==3", False), ("==three", False), (">2", False), ("!=2", False),
    ("==ten", False), ("=0", False),
])
def test_count_eval_expressions_on_coco_remotes(remotes, target, expected):
    # given the two COCO remotes, when countEval compares their number with the target
    ans = count_eval(objects=remotes, target=target)
    # then the verdict follows the expression and the evidence is the counted boxes
    assert isinstance(ans, Answer)
    assert ans.value is expected
    assert len(ans.boxes) == 2
    assert 'There are 2 "remote" objects' in ans.explanation


@pytest.mark.parametrize("target", [
    "", "+2", "2.5", "==", "two dogs", ">>1", "==eleven", "1+1", "__import__('os')", "=<2", "≥2", "== 2 3",
])
def test_count_eval_rejects_malformed_targets(remotes, target):
    with pytest.raises(ToolArgumentError, match="countEval target must be a comparison"):
        count_eval(objects=remotes, target=target)


def test_count_eval_literal_check_names_the_expected_forms(bare_registry):
    check = bare_registry.signature("countEval").literal_checks["target"]
    assert check("==3") is None
    problem = check("+2")
    assert "'==3', '>1', '>=2', '<4'" in problem and "'==three'" in problem and "'+2'" in problem


def test_parse_count_target_normalises_operators():
    assert parse_count_target("=3") == ("==", 3)
    assert parse_count_target("three") == ("==", 3)
    assert parse_count_target(">=10") == (">=", 10)


def test_count_eval_published_example_shape():
    # VPEval's notebook: "an image of ten dogs" with 3 dogs detected -> countEval false
    dogs = Detections([Box(0, 0, 10, 10, "dog"), Box(20, 0, 30, 10, "dog"), Box(40, 0, 50, 10, "dog")], query="dog")
    ans = count_eval(objects=dogs, target="==10")
    assert not ans
    assert ans.explanation == 'There are 3 "dog" objects, not 10.'


# objectEval -------------------------------------------------------------------------------------

def test_object_eval_finds_coco_cats(gt_registry, coco_image):
    ans = call(gt_registry, "objectEval", image=coco_image, target="cat")
    assert ans.value is True
    assert len(ans.boxes) == 2
    assert '"cat" object found' in ans.explanation


def test_object_eval_reports_a_missing_object(gt_registry, coco_image):
    ans = call(gt_registry, "object_eval", image=coco_image, target="dog")
    assert ans.value is False
    assert ans.explanation == 'No "dog" object found.'


def test_object_eval_without_a_detect_backend_raises_backend_unavailable(bare_registry, coco_image):
    with pytest.raises(BackendUnavailable, match="tool 'detect' has no backend installed"):
        call(bare_registry, "objectEval", image=coco_image, target="cat")


# spatialEval ------------------------------------------------------------------------------------

def test_spatial_eval_default_order_reads_b_rel_a(sided_cats_registry, coco_image):
    # VPEval's code reads 'A,B,left' as "B is left of A" (PaintSkills: "<objB> is <rel> <objA>")
    ans = call(sided_cats_registry, "spatialEval", image=coco_image, objects_relation="right cat,left cat,left")
    assert ans.value is True
    assert ans.explanation.startswith('"left cat" is to the left of "right cat"')
    assert [b.label for b in ans.boxes] == ["left cat", "right cat"]
    ans = call(sided_cats_registry, "spatialEval", image=coco_image, objects_relation="left cat,right cat,left")
    assert ans.value is False


def test_spatial_eval_a_rel_b_order_flips(sided_cats_registry, coco_image):
    ans = call(sided_cats_registry, "spatialEval", image=coco_image,
               objects_relation="left cat,right cat,left of", order="a_rel_b")
    assert ans.value is True
    ans = call(sided_cats_registry, "spatialEval", image=coco_image,
               objects_relation="right cat,left cat,left of", order="a_rel_b")
    assert ans.value is False


def test_spatial_eval_between_classes_on_coco(gt_registry, coco_image):
    # cats are lower in the picture than remotes
    assert call(gt_registry, "spatialEval", image=coco_image, objects_relation="remote,cat,below").value is True
    assert call(gt_registry, "spatialEval", image=coco_image, objects_relation="remote,cat,below",
                order="a_rel_b").value is False


def test_spatial_eval_same_class_pairs_distinct_boxes(gt_registry, coco_image):
    assert call(gt_registry, "spatialEval", image=coco_image, objects_relation="cat,cat,left").value is True


def test_spatial_eval_reports_a_missing_object(gt_registry, coco_image):
    ans = call(gt_registry, "spatialEval", image=coco_image, objects_relation="dog,cat,left")
    assert ans.value is False
    assert ans.explanation == 'No "dog" object found.'


def test_spatial_eval_front_and_behind_use_depth(gt_registry, coco_image):
    # test double depth: lower in the picture = nearer; cats are lower than remotes
    assert call(gt_registry, "spatialEval", image=coco_image, objects_relation="remote,cat,in front of").value is True
    assert call(gt_registry, "spatialEval", image=coco_image, objects_relation="remote,cat,front",
                order="a_rel_b").value is False
    assert call(gt_registry, "spatialEval", image=coco_image, objects_relation="cat,remote,behind").value is True


def test_spatial_eval_non_geometric_relation_asks_vqa(add_answers, coco_image):
    reg, vqa = add_answers({"Is the cat on the couch?": "yes"})
    ans = call(reg, "spatialEval", image=coco_image, objects_relation="couch,cat,on")
    assert ans.value is True
    assert vqa.asked == [("Is the cat on the couch?", ["yes", "no"])]
    assert "not geometric" in ans.explanation and "VQA" in ans.explanation


@pytest.mark.parametrize("text, problem", [
    ("blue book,on the bottom", "spatialEval expects 'objectA,objectB,relation' with 3 parts, got 2: 'blue book,on the bottom'"),
    ("a,b,c,d", "with 3 parts, got 4"),
    ("cat", "with 3 parts, got 1"),
    ("cat,,left", "objectB empty"),
    ("cat,dog, ", "relation empty"),
])
def test_spatial_eval_literal_check_and_runtime_agree(gt_registry, coco_image, text, problem):
    check = gt_registry.signature("spatialEval").literal_checks["objects_relation"]
    assert problem in check(text)
    with pytest.raises(ToolArgumentError, match="spatialEval expects"):
        call(gt_registry, "spatialEval", image=coco_image, objects_relation=text)


# scaleEval --------------------------------------------------------------------------------------

def test_scale_eval_both_ways_on_coco_cats(sided_cats_registry, coco_image):
    # right cat box 100547 px, left cat box 125019 px
    reg = sided_cats_registry
    assert call(reg, "scaleEval", image=coco_image, objects_relation="left cat,right cat,smaller").value is True
    assert call(reg, "scaleEval", image=coco_image, objects_relation="left cat,right cat,smaller",
                order="a_rel_b").value is False
    assert call(reg, "scaleEval", image=coco_image, objects_relation="right cat,left cat,bigger").value is True
    ans = call(reg, "scaleEval", image=coco_image, objects_relation="left cat,right cat,bigger")
    assert ans.value is False
    assert "No pair" in ans.explanation


def test_scale_eval_same_class_is_not_the_same_size_as_itself(gt_registry, coco_image):
    # VPEval paired each cat with itself, so 'same' was always true; the two cats differ by 20 %
    assert call(gt_registry, "scaleEval", image=coco_image, objects_relation="cat,cat,same").value is False


def test_scale_eval_other_relations_ask_vqa(add_answers, coco_image):
    reg, vqa = add_answers({"Is the cat taller than the remote?": "Yes"})
    assert call(reg, "scaleEval", image=coco_image, objects_relation="remote,cat,taller").value is True
    assert vqa.asked[0][0] == "Is the cat taller than the remote?"


# textEval ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("target, expected, n_boxes", [
    ("TAN WOON YANN", True, 1),
    ("tan woon yann!", True, 1),          # . , ? ! * stripped, lower-cased
    ("-INVOICE-", True, 1),
    ("Seri Kembangan", True, 1),          # a run of words inside a line
    ("MR D.T.Y.", True, 1),               # 'D.T.Y.' -> 'dty' on both sides
    ("balakong 43300", True, 2),          # a run across two consecutive lines
    ("kembangan seri", False, 0),         # order matters
    ("woon", True, 1),
    ("woo", False, 0),                    # exact tokens, not substrings
])
def test_text_eval_on_sroie_receipt(sroie_lines, target, expected, n_boxes):
    ans = text_eval(text=sroie_lines, target=target)
    assert ans.value is expected
    assert len(ans.boxes) == n_boxes


@pytest.mark.parametrize("target", ["", "...", "?!*"])
def test_text_eval_rejects_empty_targets(sroie_lines, target):
    with pytest.raises(ToolArgumentError):
        text_eval(text=sroie_lines, target=target)


# vqa --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, target, expected", [
    ("yes", "yes", True), ("Yes", "YES", True), ("no", "yes", False),
    ("2", ">1", True), ("two", ">1", True), ("1", ">1", False), ("two", "2", True),
    ("blue", ">1", False), ("orange", "orange", True),
])
def test_vqa_eval_compares_answers(add_answers, coco_image, answer, target, expected):
    reg, vqa = add_answers({}, default=answer)
    ans = call(reg, "vqa", image=coco_image, question="How many cats?", choices="1,2,3", target=target)
    assert ans.value is expected
    assert vqa.asked == [("How many cats?", ["1", "2", "3"])]
    assert ans.explanation.startswith("Q: How many cats?")


@pytest.mark.parametrize("choices", ["yes", "", "yes,"])
def test_vqa_eval_needs_two_choices(add_answers, coco_image, choices):
    reg, _ = add_answers({})
    assert "at least 2" in reg.signature("vqa").literal_checks["choices"](choices)
    with pytest.raises(ToolArgumentError, match="at least 2"):
        call(reg, "vqa", image=coco_image, question="q?", choices=choices, target="yes")


# spatialEval with GenEval's judge (hand-made boxes) -----------------------------------------------

def _table_registry(table):
    from tests.tools.conftest import QueryTableDetector
    from vistrace.tools import Registry
    from vistrace.tools.builtin import register_builtin

    reg = Registry()
    register_builtin(reg)
    reg.add_backend(QueryTableDetector(table))
    return reg


@pytest.mark.parametrize("a, b, vpeval, geneval", [
    # centres 20 px apart, big overlapping boxes: beyond VPEval's 5 px margin, inside GenEval's shrink band
    (Box(100, 100, 300, 300, score=0.9), Box(120, 100, 320, 300, score=0.9), True, False),
    # far apart side by side: both judges agree
    (Box(0, 100, 100, 200, score=0.9), Box(400, 100, 500, 200, score=0.9), True, True),
    # exactly 5 px: VPEval's margin is strict, GenEval sees no relation either
    (Box(100, 100, 200, 200, score=0.9), Box(105, 100, 205, 200, score=0.9), False, False),
])
def test_spatial_eval_judges_on_hand_made_boxes(coco_image, a, b, vpeval, geneval):
    # given a subject box (the 'cat') and a reference box (the 'dog') on the left/right axis
    reg = _table_registry({"cat": [a], "dog": [b]})
    for judge, expected in (("vpeval", vpeval), ("geneval", geneval)):
        # when spatialEval asks whether the cat is left of the dog, in both argument orders
        b_rel_a = call(reg, "spatialEval", image=coco_image, objects_relation="dog,cat,left", judge=judge)
        a_rel_b = call(reg, "spatialEval", image=coco_image, objects_relation="cat,dog,left", judge=judge,
                       order="a_rel_b")
        # then both orders give the judge's verdict
        assert b_rel_a.value is expected, judge
        assert a_rel_b.value is expected, judge


def test_spatial_eval_geneval_judge_compares_only_the_most_confident_boxes(coco_image):
    # given two cats: the confident one right of the dog, a weak one left of it
    reg = _table_registry({"cat": [Box(400, 0, 500, 100, score=0.9), Box(0, 0, 100, 100, score=0.3)],
                           "dog": [Box(200, 0, 300, 100, score=0.8)]})
    # when asked whether a cat is left of the dog
    vp = call(reg, "spatialEval", image=coco_image, objects_relation="dog,cat,left")
    ge = call(reg, "spatialEval", image=coco_image, objects_relation="dog,cat,left", judge="geneval")
    # then VPEval's any-pair rule finds the weak cat; GenEval looks only at the confident one
    assert vp.value is True
    assert ge.value is False
    assert "GenEval" in ge.explanation
