"""Fixtures for the offline-expert tests: the model files (skipped, with the fetch command, when absent)."""

from __future__ import annotations

import pytest


def need_model(name: str) -> None:
    from vistrace.tools.experts.tfjs import support

    avail = support.availability(name)
    if not avail.ok:
        pytest.skip(f"model '{name}' not available here: {avail.reason} (fix: {avail.fix})")


@pytest.fixture
def astronaut():
    skdata = pytest.importorskip("skimage.data", reason="scikit-image (a dev dependency) has the astronaut image")
    from vistrace.values import Image

    return Image.from_array(skdata.astronaut(), source="skimage.data.astronaut()")
