"""Given the shipped program library and examples, when checked, then every program is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

import vistrace
from vistrace.programs import library
from vistrace.sandbox import errors

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_library_programs_check_clean():
    programs = library()
    assert {"zoom_region", "visprog_halves"} <= set(programs)
    for name, source in programs.items():
        assert errors(vistrace.check(source)) == [], name


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.vp")), ids=lambda p: p.name)
def test_examples_check_clean(path):
    assert errors(vistrace.check(path)) == []
