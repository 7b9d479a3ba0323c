"""Given a Segment Anything checkpoint the user saved (here: the real ViT-B architecture with random
weights, written with ``torch.save(model.state_dict())``), when ``segment`` runs through the registry
with a box, a point or a rough mask, then the mask covers the given image's (or crop's) grid, equals
what the library's own ``SamPredictor`` predicts for the same inputs, the image is embedded once for
several prompts, the model type is read from the checkpoint, and a missing, unset or ill-fitting
checkpoint is a clear BackendUnavailable.

One SAM embedding at 1024x1024 takes tens of seconds on 2 CPU cores, so the whole module embeds
only two images: the crop below through our backend, and the same crop in the reference predictor.
"""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image as PILImage

from vistrace.errors import BackendUnavailable
from vistrace.tools import Registry
from vistrace.tools.adapters import sam
from vistrace.tools.builtin import register_builtin
from vistrace.tools.model_cache import MODELS
from vistrace.values import Box, Image, Mask


pytestmark = pytest.mark.usefixtures("one_thread")

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

ROOT_DISK = Box(120, 80, 240, 200, label="disk")   # the disk's box in root pixels
CROP = Box(60, 40, 300, 220)                        # a 240x180 crop around it (non-square)
POINT = (180.0, 140.0)                              # the disk's centre, root pixels


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random-weight ViT-B SAM state dict on disk, as users have Meta's sam_vit_b_01ec64.pth."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    model = sam_model_registry["vit_b"](checkpoint=None)
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def scene() -> tuple[Image, Image]:
    """A 400x300 textured root image with a red disk, and a 240x180 crop of it (the image we segment)."""
    rng = np.random.default_rng(0)
    h, w = 300, 400
    img = rng.integers(60, 200, size=(h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    img[(xx - 180) ** 2 + (yy - 140) ** 2 < 60 ** 2] = (220, 30, 30)
    root = Image(PILImage.fromarray(img), source="synthetic disk")
    return root, root.crop(CROP)


@pytest.fixture(scope="module")
def reference(checkpoint, scene):
    """The library on its own: sam_model_registry(checkpoint=path) + SamPredictor.set_image on the crop."""
    from segment_anything import SamPredictor, sam_model_registry

    predictor = SamPredictor(sam_model_registry["vit_b"](checkpoint=str(checkpoint)))
    predictor.set_image(np.asarray(scene[1].pil.convert("RGB")))
    return predictor


@pytest.fixture(scope="module")
def backend() -> sam.SamBackend:
    """One backend for the module, so its embedding cache is shared by the tests."""
    return sam.backends()[0]


@pytest.fixture
def configured(checkpoint, monkeypatch) -> None:
    """The checkpoint is set by the environment, as a user would: VISTRACE_SAM_CHECKPOINT."""
    monkeypatch.setenv("VISTRACE_SAM_CHECKPOINT", str(checkpoint))


@pytest.fixture
def registry(backend, configured) -> Registry:
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(backend)
    return reg


def disk_mask(crop: Image) -> Mask:
    """The disk over the crop's grid (a rough-mask prompt)."""
    yy, xx = np.mgrid[:crop.height, :crop.width]
    cx, cy = POINT[0] - crop.offset[0], POINT[1] - crop.offset[1]
    return Mask((xx - cx) ** 2 + (yy - cy) ** 2 < 55 ** 2, label="rough disk")


def library_predict(reference, crop: Image, prompt: str, multimask: bool):
    """What SamPredictor.predict returns for one prompt kind, in the crop's own pixels."""
    local = crop.from_root(ROOT_DISK)
    kw = {}
    if "box" in prompt:
        kw["box"] = np.array(local.xyxy)
    if "point" in prompt:
        kw["point_coords"] = np.array([[POINT[0] - crop.offset[0], POINT[1] - crop.offset[1]]])
        kw["point_labels"] = np.array([1])
    if "mask" in prompt:
        kw["mask_input"] = sam.mask_to_low_res_logits(disk_mask(crop).array)
    masks, scores, _ = reference.predict(multimask_output=multimask, **kw)
    best = int(np.argmax(scores))
    return masks[best], float(scores[best]), len(scores)


@pytest.mark.slow
@pytest.mark.parametrize("prompt, candidates", [("box", 1), ("point", 3), ("mask", 1), ("box+point", 1)])
def test_each_prompt_kind_gives_the_libraries_mask_over_the_crop_grid(registry, scene, reference, prompt, candidates):
    """Given a 240x180 crop and a prompt in root pixels, when segment runs, then the mask is 180x240 bool,
    its score is SAM's predicted IoU, and it equals SamPredictor's best mask for the same local prompt
    (three candidates, the best kept, only for a lone point)."""
    _, crop = scene
    args = {"box": ROOT_DISK} if "box" in prompt else {}
    if "point" in prompt:
        args["point"] = list(POINT)
    if "mask" in prompt:
        args["mask"] = disk_mask(crop)
    out = registry.get("segment")(registry, image=crop, **args)
    want, score, n = library_predict(reference, crop, prompt, multimask=candidates > 1)
    assert n == candidates and 0 < want.sum() < want.size  # random weights, yet partial masks (8-35k of 43.2k px)
    assert out.array.shape == (crop.height, crop.width) == (180, 240) and out.array.dtype == bool
    assert isinstance(out.score, float) and out.score == pytest.approx(score, abs=1e-6)
    assert np.array_equal(out.array, want)
    assert out.label == ("disk" if "box" in prompt else "rough disk" if "mask" in prompt else "object")


@pytest.mark.slow
def test_prompts_on_one_image_embed_it_once(registry, backend, scene):
    """Given the crop, when it is prompted by a box, a point and a mask, then set_image ran once for it
    in this module and its embedding is cached under the crop's pixel hash."""
    _, crop = scene
    tool = registry.get("segment")
    tool(registry, image=crop, box=ROOT_DISK)
    before = backend.embeddings_computed
    tool(registry, image=crop, point=list(POINT))
    tool(registry, image=crop, mask=disk_mask(crop))
    assert backend.embeddings_computed == before == 1
    assert [k[0] for k in backend.cached_embeddings()] == [crop.sha256]


@pytest.mark.slow
def test_multimask_setting_overrides_the_default(registry, backend, scene, reference, monkeypatch):
    """Given multimask=false, when a lone point is the prompt, then SAM's single mask is returned
    (as the library gives it), and the backend's version records the setting."""
    _, crop = scene
    monkeypatch.setenv("VISTRACE_SAM_MULTIMASK", "false")
    out = registry.get("segment")(registry, image=crop, point=list(POINT))
    want, score, n = library_predict(reference, crop, "point", multimask=False)
    assert n == 1 and np.array_equal(out.array, want) and out.score == pytest.approx(score, abs=1e-6)
    assert backend.version.endswith("+multimask=off")


@pytest.mark.slow
def test_model_type_is_inferred_from_the_checkpoint(backend, checkpoint, configured, reference):
    """Given no model_type, when the model loads, then it is ViT-B (read from the tensor shapes), loaded
    once, with the same weights as the library's own loader."""
    predictor = backend.loaded()
    assert sam.architecture_of(predictor.model.state_dict())[0] == "vit_b"
    key = next(k for k in MODELS.loaded() if k.startswith(f"sam:{checkpoint}:"))
    assert key.endswith(":cpu:auto") and MODELS.loads[key] == 1
    ours, theirs = predictor.model.state_dict(), reference.model.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("width, depth, expected", [(768, 12, "vit_b"), (1024, 24, "vit_l"), (1280, 32, "vit_h"),
                                                    (768, 24, None), (512, 12, None)])
def test_architecture_is_read_from_shapes(width, depth, expected):
    """Given a state dict's patch-embedding width and block count, then the registry type (or none) is named."""
    state = {sam.PATCH_KEY: torch.empty((width, 3, 16, 16), device="meta")}
    state.update({f"image_encoder.blocks.{i}.norm1.weight": torch.empty(width, device="meta") for i in range(depth)})
    found, words = sam.architecture_of(state)
    assert found == expected and f"width {width}, {depth} blocks" in words


@pytest.mark.slow
def test_a_rough_mask_survives_sams_own_geometry(backend, configured, scene):
    """Given a mask on the non-square crop, when it is turned into low-res logits and SAM's own
    postprocess_masks upsamples them back, then the mask is recovered (IoU > 0.97); stretching the mask
    to 256x256 without SAM's resize-and-pad geometry would not (IoU < 0.8)."""
    _, crop = scene
    rough = disk_mask(crop).array
    model = backend.loaded().model
    size = (crop.height, crop.width)
    from segment_anything.utils.transforms import ResizeLongestSide

    input_size = ResizeLongestSide.get_preprocess_shape(*size, model.image_encoder.img_size)

    def back(logits):
        t = torch.as_tensor(logits)[None]
        return (model.postprocess_masks(t, input_size, size) > model.mask_threshold)[0, 0].numpy()

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    logits = sam.mask_to_low_res_logits(rough)
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    assert logits.max() == pytest.approx(sam.MASK_LOGIT) and logits[0, -1, -1] == pytest.approx(-sam.MASK_LOGIT)
    assert iou(back(logits), rough) > 0.97
    stretched = torch.nn.functional.interpolate(torch.tensor(rough, dtype=torch.float32)[None, None], (256, 256))
    assert iou(back(((stretched[0] * 2 - 1) * sam.MASK_LOGIT).numpy()), rough) < 0.8


@pytest.mark.slow
@pytest.mark.parametrize("env, message", [
    ({}, "no weights configured"),
    ({"VISTRACE_SAM_CHECKPOINT": "/nonexistent/sam_vit_b.pth"}, "weights file not found"),
    ({"VISTRACE_SAM_MODEL_TYPE": "vit_x"}, "model_type 'vit_x'"),
    ({"VISTRACE_SAM_MULTIMASK": "maybe"}, "multimask 'maybe'"),
])
def test_unusable_settings_are_named_before_anything_loads(registry, scene, monkeypatch, env, message):
    """Given an unset or missing checkpoint or a bad optional setting, when segment is called, then
    BackendUnavailable names the problem and the environment variable that fixes it."""
    if not env:
        monkeypatch.delenv("VISTRACE_SAM_CHECKPOINT")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(BackendUnavailable, match="sam") as err:
        registry.get("segment")(registry, image=scene[1], box=ROOT_DISK)
    text = str(err.value)
    assert message in text and "VISTRACE_SAM_" in text


@pytest.mark.slow
def test_a_model_type_that_does_not_fit_is_named(registry, scene, monkeypatch):
    """Given the ViT-B checkpoint with model_type=vit_l, when segment runs, then BackendUnavailable says
    vit_l does not fit a vit_b checkpoint (nothing is guessed)."""
    monkeypatch.setenv("VISTRACE_SAM_MODEL_TYPE", "vit_l")
    with pytest.raises(BackendUnavailable, match=r"model_type 'vit_l' does not fit .* which is a vit_b") as err:
        registry.get("segment")(registry, image=scene[1], box=ROOT_DISK)
    assert "VISTRACE_SAM_MODEL_TYPE" in str(err.value)


def _state_with_vit_b_shapes_only() -> dict:
    state = {sam.PATCH_KEY: torch.zeros(768, 3, 16, 16)}
    state.update({f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(768) for i in range(12)})
    return state


@pytest.mark.slow
@pytest.mark.parametrize("content, model_type, message", [
    (b"not a checkpoint at all", None, "cannot read the checkpoint .* not a file of plain tensors"),
    (b"", None, "cannot read the checkpoint .* empty or cut short"),
    ({"weight": [1, 2, 3]}, None, "cannot tell the SAM model type"),
    ("vit_b_shapes_only", "vit_b", "does not fit SAM model_type 'vit_b'.*Missing key"),
])
def test_a_checkpoint_that_is_not_sam_is_refused(registry, scene, tmp_path, monkeypatch, content, model_type, message):
    """Given a file that is not a SAM state dict (unreadable, other keys, or SAM-like shapes with most
    tensors missing so load_state_dict fails), when segment runs, then BackendUnavailable says why."""
    path = tmp_path / "bad.pth"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(_state_with_vit_b_shapes_only() if content == "vit_b_shapes_only" else content, path)
    monkeypatch.setenv("VISTRACE_SAM_CHECKPOINT", str(path))
    if model_type:
        monkeypatch.setenv("VISTRACE_SAM_MODEL_TYPE", model_type)
    with pytest.raises(BackendUnavailable, match=message):
        registry.get("segment")(registry, image=scene[1], box=ROOT_DISK)


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_cuda_device_without_cuda_is_named(registry, scene, monkeypatch):
    """Given device=cuda on a machine without CUDA, when segment runs, then the device setting is named."""
    monkeypatch.setenv("VISTRACE_SAM_DEVICE", "cuda")
    with pytest.raises(BackendUnavailable, match="device 'cuda'.*no CUDA") as err:
        registry.get("segment")(registry, image=scene[1], box=ROOT_DISK)
    assert "VISTRACE_SAM_DEVICE=cpu" in str(err.value)


@pytest.mark.parametrize("args", [{"box": Box(0, 0, 5, 5)}, {"point": (1.0, 2.0)}, {"mask": Mask(np.ones((2, 2)))}])
def test_any_prompt_kind_suits(backend, args):
    """Given any one prompt kind, then sam suits it and says which prompts it got."""
    ok, why = backend.suits(args)
    assert ok and next(iter(args)) in why
