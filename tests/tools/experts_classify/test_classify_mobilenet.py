"""MobileNetV2 on real photographs: the labels, the cache, the registry path and the trace."""

from __future__ import annotations

import pytest

import vistrace
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.tools.experts.imagenet_labels import imagenet_classes
from vistrace.tools.experts.mobilenet import MobileNetBackend, backends
from vistrace.tools.model_cache import MODELS
from vistrace.values import Box, Labels

from .conftest import CATS


def test_the_class_list_has_1000_names_in_imagenet_index_order():
    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[207], names[281], names[282], names[285], names[417]) == (
        "tench", "golden retriever", "tabby", "tiger cat", "Egyptian cat", "balloon")
    assert (names[504], names[967], names[968], names[999]) == ("coffee mug", "espresso", "cup", "toilet tissue")
    # the two duplicated names of the ILSVRC list, as torchvision has them
    assert [i for i, n in enumerate(names) if n == "crane"] == [134, 517]
    assert [i for i, n in enumerate(names) if n == "maillot"] == [638, 639]
    assert len(set(names)) == 998


def test_backend_declares_itself():
    (b,) = backends()
    assert isinstance(b, MobileNetBackend)
    assert (b.tool, b.name, b.version) == ("classify", "mobilenet_v2", "1.0.1")
    assert b.model == "torchvision MobileNetV2 ImageNet-1k (b0353104)"


def test_a_cat_photo_is_labelled_a_cat(backend, chelsea):
    labels = backend.run(image=chelsea, top_k=5)
    assert isinstance(labels, Labels) and len(labels) == 5
    assert labels.top in CATS
    assert CATS & set(labels.names)
    assert labels.scores == sorted(labels.scores, reverse=True)
    assert 0 < sum(labels.scores) <= 1.0 + 1e-6


def test_coffee_photo_is_labelled_coffee(backend, coffee):
    labels = backend.run(image=coffee, top_k=5)
    assert labels.top == "espresso"
    assert {"cup", "espresso", "coffee mug"} & set(labels.names)


def test_astronaut_has_no_imagenet_class_so_the_model_is_unsure_but_sees_clothing(backend, astronaut):
    # given a portrait of an astronaut (ImageNet-1k has no 'astronaut' or 'person' class)
    whole = backend.run(image=astronaut, top_k=5)
    # then no label is confident
    assert whole.scores[0] < 0.5
    # and a crop of the upper body is read as clothing, with crops composing
    upper = backend.run(image=astronaut.crop(Box(150, 20, 350, 230)), top_k=5)
    assert {"military uniform", "suit", "trench coat", "lab coat", "jersey", "sweatshirt"} & set(upper.names)


def test_grayscale_and_rgba_images_are_classified_as_rgb(backend, camera, chelsea):
    # skimage's camera is a single-channel photo of a cameraman behind a tripod
    assert camera.pil.mode == "L"
    assert "tripod" in backend.run(image=camera, top_k=3).names
    rgba = type(chelsea)(chelsea.pil.convert("RGBA"))
    assert backend.run(image=rgba, top_k=3).names == backend.run(image=chelsea, top_k=3).names


def test_top_k_is_respected(backend, chelsea):
    assert len(backend.run(image=chelsea, top_k=1)) == 1
    assert len(backend.run(image=chelsea, top_k=1000)) == 1000


def test_weights_load_once_per_process(backend, chelsea, coffee):
    from vistrace.config import device

    key = f"torch:mobilenet_v2:{device()}"
    backend.run(image=chelsea, top_k=5)
    backend.run(image=coffee, top_k=5)
    MobileNetBackend().run(image=chelsea, top_k=1)  # a second backend instance shares the cache
    assert MODELS.loads[key] == 1
    assert key in MODELS.loaded()


def test_end_to_end_through_the_registry_records_backend_and_model(weights, chelsea, tmp_path):
    # given the built-in tools and the MobileNetV2 backend
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(MobileNetBackend())
    path = tmp_path / "chelsea.png"
    chelsea.pil.save(path)
    # when a program classifies an image file
    run = vistrace.run("labels = classify(image)\nresult = labels.top", registry=reg, cache=False, image=str(path))
    # then it answers a cat class and the trace says which expert answered
    assert run.error is None, run.error
    assert run.value in CATS
    (step,) = [s for s in run.trace.steps if s.tool == "classify"]
    assert (step.backend, step.model, step.version) == (
        "mobilenet_v2", "torchvision MobileNetV2 ImageNet-1k (b0353104)", "1.0.1")
    assert "mobilenet_v2" in (step.reason or "")


@pytest.mark.parametrize("top_k", [0, 1001])
def test_bad_top_k_is_refused_by_the_tool(weights, chelsea, top_k):
    from vistrace.errors import ToolArgumentError

    reg = Registry()
    register_builtin(reg)
    reg.add_backend(MobileNetBackend())
    with pytest.raises(ToolArgumentError, match="top_k"):
        reg.get("classify")(reg, image=chelsea, top_k=top_k)
