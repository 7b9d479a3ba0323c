"""Given no diffusion weights, when a program asks for an image, then ``generate`` says what to configure
(and names layout_sketch), and ``layout_sketch`` draws the VPGen layout while saying it is only a sketch."""

from __future__ import annotations

import numpy as np
import pytest

import vistrace
from vistrace.errors import BackendUnavailable, ToolArgumentError
from vistrace.values import Box, Detections


def layout(*boxes: tuple[float, float, float, float, str]) -> Detections:
    return Detections([Box(*b) for b in boxes], query="layout", image_size=(512, 512))


def test_layout_sketch_draws_each_box_and_says_it_is_a_sketch(bare_registry):
    lay = layout((40, 60, 200, 300, "cat"), (260, 100, 480, 400, "dog"))
    img = bare_registry.get("layout_sketch")(bare_registry, layout=lay, width=512, height=512, prompt="a cat and a dog")
    assert img.size == (512, 512)
    assert "layout sketch (not a generated image)" in img.source
    arr = np.asarray(img.pil)
    background = arr[5, 500]
    assert (arr[200, 40] != background).any(), "the cat box's left edge is drawn"
    assert (arr[250, 479] != background).any(), "the dog box's right edge is drawn"
    assert (arr[250, 350] == background).all(), "inside a box stays blank: nothing pretends to be an object"


def test_layout_sketch_in_a_program_lands_in_the_trace(bare_registry):
    program = ("lay = detections([box(40, 60, 200, 300, 'cat'), box(260, 100, 480, 400, 'dog')])\n"
               "img = layout_sketch(lay, 512, 384)\nresult = img.size")
    run = vistrace.run(program, registry=bare_registry, cache=False)
    assert run.ok, run.error
    assert run.value == (512, 384)
    assert any(s.tool == "layout_sketch" for s in run.trace.steps)


@pytest.mark.parametrize("kwargs, needle", [
    ({"layout": Detections([], query="x")}, "layout is empty"),
    ({"layout": layout((10, 10, 50, 50, ""))}, "needs a label"),
    ({"layout": layout((600, 600, 700, 700, "cat"))}, "outside the 512x512 canvas"),
    ({"layout": layout((10, 10, 50, 50, "cat")), "width": 10}, "width must be between 64"),
])
def test_layout_sketch_rejects_bad_layouts(bare_registry, kwargs, needle):
    with pytest.raises(ToolArgumentError, match=needle):
        bare_registry.get("layout_sketch")(bare_registry, **kwargs)


def test_generate_without_weights_names_the_fix_and_layout_sketch(bare_registry):
    with pytest.raises(BackendUnavailable) as err:
        bare_registry.get("generate")(bare_registry, prompt="a red car")
    assert "layout_sketch" in str(err.value)


def test_depth_without_weights_mentions_stereo_depth(bare_registry, make_image):
    with pytest.raises(BackendUnavailable) as err:
        bare_registry.get("depth")(bare_registry, image=make_image(64, 48))
    assert "stereo_depth" in str(err.value)


@pytest.mark.parametrize("kwargs, needle", [
    ({"prompt": "  "}, "non-empty prompt"),
    ({"prompt": "a cat", "width": 4096}, "width must be between"),
    ({"prompt": "a cat", "steps": 0}, "steps must be between"),
    ({"prompt": "a cat", "layout": Detections([], query="x")}, "layout is empty"),
])
def test_generate_checks_its_arguments_before_any_backend(bare_registry, kwargs, needle):
    with pytest.raises(ToolArgumentError, match=needle):
        bare_registry.get("generate")(bare_registry, **kwargs)
