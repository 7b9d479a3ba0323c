"""GenEval family: programs from metadata clauses, GenEval's image layout, all-clauses-hold scoring."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import shared
from vistrace import check
from vistrace.errors import InputError
from vistrace.evaluate import run_eval
from vistrace.programs.families.geneval import GenEvalSet, geneval_images, geneval_program, read_metadata
from vistrace.sandbox import errors


def test_every_published_metadata_entry_becomes_a_clean_program():
    entries = read_metadata(shared("geneval/evaluation_metadata.jsonl"))
    assert len(entries) == 366
    for meta in entries:
        assert errors(check(geneval_program(meta))) == [], meta["prompt"]


@pytest.mark.parametrize("meta, program", [
    ({"tag": "counting", "include": [{"class": "handbag", "count": 4}], "exclude": [{"class": "handbag", "count": 5}]},
     "countEval(objDet(image, 'handbag', threshold=0.9), '>=4');countEval(objDet(image, 'handbag', threshold=0.9), '<5')"),
    ({"tag": "position", "include": [{"class": "kite", "count": 1},
                                     {"class": "wine glass", "count": 1, "position": ["above", 0]}]},
     "countEval(objDet(image, 'kite', threshold=0.3), '>=1');countEval(objDet(image, 'wine glass', threshold=0.3), '>=1');"
     "spatialEval(image, 'kite,wine glass,above', judge='geneval')"),
    ({"tag": "colors", "include": [{"class": "fire hydrant", "count": 1, "color": "blue"}]},
     "countEval(objDet(image, 'fire hydrant', threshold=0.3), '>=1');vqa(image, 'what color is the fire hydrant?', "
     "'red,orange,yellow,green,blue,purple,pink,brown,black,white', 'blue')"),
])
def test_clauses_become_modules_with_the_published_thresholds(meta, program):
    assert geneval_program(meta, threshold=0.3, counting_threshold=0.9) == program


@pytest.mark.parametrize("meta", [
    {"include": []}, {"tag": "position", "include": [{"class": "a", "count": 1, "position": ["near", 0]}]},
    {"tag": "position", "include": [{"class": "a", "count": 1, "position": ["above", 5]}]}, {"tag": "x", "include": []},
])
def test_malformed_metadata_is_rejected(meta):
    with pytest.raises(InputError):
        geneval_program(meta)


METADATA = [
    {"tag": "counting", "include": [{"class": "cat", "count": 2}], "exclude": [{"class": "cat", "count": 3}],
     "prompt": "a photo of two cats"},
    {"tag": "counting", "include": [{"class": "cat", "count": 3}], "exclude": [{"class": "cat", "count": 4}],
     "prompt": "a photo of three cats"},
    {"tag": "colors", "include": [{"class": "cat", "count": 1, "color": "orange"}], "prompt": "a photo of an orange cat"},
    {"tag": "two_object", "include": [{"class": "cat", "count": 1}, {"class": "remote", "count": 1}],
     "prompt": "a photo of a cat and a remote"},
]


@pytest.fixture
def geneval_folder(tmp_path):
    """GenEval's layout with the COCO cats image as every sample: <NNNNN>/samples/0000.png + metadata.jsonl."""
    image = shared("coco_fixture/000000039769.png")
    for i, meta in enumerate(METADATA):
        folder = tmp_path / "images" / f"{i:05d}"
        (folder / "samples").mkdir(parents=True)
        shutil.copy(image, folder / "samples" / "0000.png")
        (folder / "metadata.jsonl").write_text(json.dumps(meta))
    return tmp_path / "images"


def test_geneval_layout_is_found(geneval_folder):
    found = geneval_images(geneval_folder, len(METADATA))
    assert [item for _, item, _ in found] == ["00000/0000", "00001/0000", "00002/0000", "00003/0000"]


@pytest.mark.slow
def test_geneval_on_the_coco_cats(geneval_folder, tmp_path):
    # given the COCO image (2 cats, 2 remotes) under four GenEval prompts, metadata from the folders
    summary = run_eval(GenEvalSet(None, geneval_folder), tmp_path / "out", progress=False)
    results = {json.loads(p.read_text())["id"]: json.loads(p.read_text())
               for p in (tmp_path / "out").glob("items/*/result.json")}
    # then two cats is correct, three cats is not, the colour prompt is not scored offline
    assert results["00000/0000"]["score"] == 1.0
    assert results["00001/0000"]["score"] == 0.0
    assert results["00002/0000"]["score"] is None and summary.metrics["unscored"] == 1
    assert summary.metrics["accuracy_counting"] == 0.5
    assert set(summary.metrics) >= {"accuracy", "overall", "accuracy_two_object"}


def test_no_images_in_the_layout_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no GenEval images"):
        GenEvalSet(shared("geneval/evaluation_metadata.jsonl"), tmp_path)
