"""Given text-to-image prompts of the public sets, when the deterministic planner reads them, then it
writes VPEval's skill program (VPEval's 'A,B,rel' order: B is <rel> A) or declines."""

from __future__ import annotations

import pytest

from vistrace import check
from vistrace.programs.families.prompt_rules import rules_program, singular
from vistrace.sandbox import errors


@pytest.mark.parametrize("prompt, skill, program", [
    ("an image of ten dogs", "count", "objectEval(image, 'dog');countEval(objDet(image, 'dog'), '==10')"),
    ("2 persons", "count", "objectEval(image, 'person');countEval(objDet(image, 'person'), '==2')"),
    ("a photo of four handbags", "count",
     "objectEval(image, 'handbag');countEval(objDet(image, 'handbag'), '==4')"),
    ("a horse on the right of a man", "spatial",
     "objectEval(image, 'horse');objectEval(image, 'man');spatialEval(image, 'man,horse,right')"),
    ("a balloon on the top of a giraffe", "spatial",
     "objectEval(image, 'balloon');objectEval(image, 'giraffe');spatialEval(image, 'giraffe,balloon,above')"),
    ("a fish behind a butterfly", "spatial",
     "objectEval(image, 'fish');objectEval(image, 'butterfly');spatialEval(image, 'butterfly,fish,behind')"),
    ("a cat bigger than a dog", "scale",
     "objectEval(image, 'cat');objectEval(image, 'dog');scaleEval(image, 'dog,cat,bigger')"),
    ("a sign that reads 'imagine'", "text", "textEval(ocr(image), 'imagine')"),
    ("a photo of a toothbrush and a snowboard", "object",
     "objectEval(image, 'toothbrush');objectEval(image, 'snowboard')"),
    ("a photo of a bicycle", "object", "objectEval(image, 'bicycle')"),
])
def test_templated_prompts_become_skill_programs(prompt, skill, program):
    plan = rules_program(prompt)
    assert plan is not None
    assert (plan.skill, plan.program) == (skill, program)
    assert errors(check(plan.program)) == []


def test_colours_become_vqa_modules_with_genevals_colours():
    plan = rules_program("a photo of a purple wine glass and a black apple")
    assert plan.objects == ("wine glass", "apple")
    assert "vqa(image, 'what color is the wine glass?', 'red,orange,yellow,green,blue,purple,pink,brown,black,white', " \
           "'purple')" in plan.program
    assert errors(check(plan.program)) == []


@pytest.mark.parametrize("prompt", [
    "", "   ", "a man riding a horse while the sun sets over the mountains in the distance", "a cup of coffee",
])
def test_prompts_no_template_fits_are_declined(prompt):
    assert rules_program(prompt) is None


@pytest.mark.parametrize("plural, one", [("dogs", "dog"), ("persons", "person"), ("people", "person"),
                                         ("buses", "bus"), ("wine glasses", "wine glass"), ("knives", "knife"),
                                         ("butterflies", "butterfly"), ("bus", "bus"), ("grass", "grass")])
def test_singular(plural, one):
    assert singular(plural) == one


def test_every_t2i_compbench_spatial_prompt_plans_a_clean_program():
    from tests.conftest import shared

    prompts = shared("t2i_compbench/spatial_train.txt").read_text().splitlines()[:200]
    plans = [rules_program(p) for p in prompts if p.strip()]
    assert sum(p is not None for p in plans) / len(plans) > 0.95
    for p in plans:
        if p is not None:
            assert p.skill == "spatial" and errors(check(p.program)) == [], p.program
