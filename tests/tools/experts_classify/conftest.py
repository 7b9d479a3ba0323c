"""Fixtures for the MobileNetV2 ``classify`` backend: real weights, real skimage photographs.

Tests that need the weights skip (with the fetch command) when they are not on this machine; the
missing/corrupt-weights tests run everywhere.
"""

from __future__ import annotations

import pytest
from PIL import Image as PILImage

from vistrace.tools import models
from vistrace.tools.experts import mobilenet
from vistrace.values import Image

CATS = {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}


def _skimage(name: str) -> Image:
    data = pytest.importorskip("skimage.data")
    return Image(PILImage.fromarray(getattr(data, name)()), source=f"skimage.data.{name}")


@pytest.fixture
def weights():
    """The verified checkpoint path (skips when torch or the weights are absent)."""
    pytest.importorskip("torch")
    ok, reason = models.status(mobilenet.MODEL_NAME)
    if not ok:
        pytest.skip(f"{reason} — run `vistrace models fetch {mobilenet.MODEL_NAME}`")
    return models.require(mobilenet.MODEL_NAME)


@pytest.fixture
def backend(weights) -> mobilenet.MobileNetBackend:
    return mobilenet.MobileNetBackend()


@pytest.fixture
def chelsea() -> Image:
    return _skimage("chelsea")


@pytest.fixture
def coffee() -> Image:
    return _skimage("coffee")


@pytest.fixture
def astronaut() -> Image:
    return _skimage("astronaut")


@pytest.fixture
def camera() -> Image:
    return _skimage("camera")
