"""Given VPEval's 160 published open-ended programs, when checked, then the valid ones are accepted and
the malformed ones are rejected with a precise message — and nothing raises an internal error."""

from __future__ import annotations

import json

from tests.conftest import shared
from vistrace import check
from vistrace.sandbox import errors

# The malformed programs in aszala/VPEval data/open_ended/all_evaluation_programs.json and why.
MALFORMED = {
    "partiprompt_1164": "conductor's",                   # apostrophe ends the '...' string early
    "coco_627537": "';'-separated",                      # if/else written on one ';'-separated line
    "partiprompt_116": "countEval takes at most 2 positional arguments, got 4",  # countEval(a,'+',b,'==2')
    "coco_413279": "unknown tool 'sizeEval'",            # no such module (scaleEval exists)
    "coco_645405": "with 3 parts, got 2",                # spatialEval 'furniture,turned on its side'
    "drawbench_68": "with 3 parts, got 2",               # spatialEval 'blue book,on the bottom'
    "coco_100240": "at least 2 comma-separated choices",  # vqa choices 'unknown'
}


def _programs() -> dict[str, str]:
    return json.loads(shared("vpeval/open_ended/all_evaluation_programs.json").read_text())


def test_every_published_program_is_accepted_or_precisely_rejected():
    programs = _programs()
    assert len(programs) == 160
    rejected = {}
    for key, source in programs.items():
        problems = errors(check(source))
        if problems:
            rejected[key] = problems
    assert sorted(rejected) == sorted(MALFORMED)
    assert len(programs) - len(rejected) == 153
    for key, expected in MALFORMED.items():
        text = " ".join(f"{p.message} {p.hint or ''}" for p in rejected[key])
        assert expected in text, (key, [str(p) for p in rejected[key]])
        assert all(p.line == 1 and p.col > 0 for p in rejected[key])


def test_sizeEval_suggests_scaleEval():
    problems = errors(check(_programs()["coco_413279"]))
    assert any(p.hint == "did you mean 'scaleEval'?" for p in problems)
