"""Given a DPT or Depth-Anything checkpoint the user saved with ``save_pretrained`` (here: the real
architectures with tiny random weights), when ``depth`` runs through the registry, then the map covers
the given image's (or crop's) pixel grid, equals the library's own model + post-processing, states the
convention its config implies (or the setting's override), batches like single calls, and a missing or
wrong checkpoint is a clear BackendUnavailable."""

from __future__ import annotations

import numpy as np
import pytest

import vistrace
from vistrace.errors import BackendUnavailable
from vistrace.settings import env_name
from vistrace.tools import Registry
from vistrace.tools.adapters import hf_depth
from vistrace.tools.builtin import register_builtin
from vistrace.values import Box, Image
from .conftest import picture, registry_with


@pytest.fixture
def registry():
    return registry_with(*hf_depth.backends())


pytestmark = pytest.mark.usefixtures("one_thread")

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny random DPT and Depth-Anything (relative and metric) checkpoints, each in its own folder
    (initializer_range 0.1 so the random heads give maps well above float noise)."""
    torch.set_num_threads(1)
    from transformers import (BeitConfig, DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config,
                              DPTConfig, DPTForDepthEstimation, DPTImageProcessor, ZoeDepthConfig,
                              ZoeDepthForDepthEstimation, ZoeDepthImageProcessor)

    root = tmp_path_factory.mktemp("hf_depth")
    torch.manual_seed(0)
    dpt = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
                    patch_size=16, is_hybrid=False, backbone_out_indices=[0, 1, 2, 3],
                    neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16, initializer_range=0.1)
    DPTForDepthEstimation(dpt).eval().save_pretrained(root / "dpt")
    DPTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(root / "dpt")
    # Depth-Anything's processor keeps the aspect ratio at multiples of the 14-pixel patch, as on the hub
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            image_size=56, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False,
                            initializer_range=0.1)
    for kind in ("relative", "metric"):
        cfg = DepthAnythingConfig(backbone_config=backbone.to_dict(), reassemble_hidden_size=32, patch_size=14,
                                  neck_hidden_sizes=[8, 16, 16, 32], fusion_hidden_size=16, head_hidden_size=8,
                                  depth_estimation_type=kind, max_depth=20, initializer_range=0.1)
        DepthAnythingForDepthEstimation(cfg).eval().save_pretrained(root / f"da_{kind}")
        DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True,
                          ensure_multiple_of=14).save_pretrained(root / f"da_{kind}")
    # ZoeDepth (metric bins over a BEiT backbone); its processor pads the input, post-processing strips it
    beit = BeitConfig(image_size=64, patch_size=16, num_hidden_layers=4, hidden_size=32, intermediate_size=64,
                      num_attention_heads=2, use_relative_position_bias=True, reshape_hidden_states=False,
                      out_features=["stage1", "stage2", "stage3", "stage4"], initializer_range=0.1)
    zoe = ZoeDepthConfig(backbone_config=beit.to_dict(), neck_hidden_sizes=[16, 16, 32, 32], fusion_hidden_size=16,
                         bottleneck_features=16, num_relative_features=8, bin_embedding_dim=16,
                         num_attractors=[4, 2, 2, 1], bin_configurations=[{"n_bins": 8, "min_depth": 0.001,
                                                                          "max_depth": 10.0}],
                         patch_transformer_hidden_size=16, patch_transformer_intermediate_size=32,
                         patch_transformer_num_attention_heads=2, num_patch_transformer_layers=1, initializer_range=0.1)
    ZoeDepthForDepthEstimation(zoe).eval().save_pretrained(root / "zoe")
    ZoeDepthImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=True,
                           ensure_multiple_of=16).save_pretrained(root / "zoe")
    return root


def reference_depth(folder, pil) -> np.ndarray:
    """An independent run: the library's processor, model and post_process_depth_estimation."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).eval()
    with torch.no_grad():
        out = model(**processor(images=pil, return_tensors="pt"))
    sizes = {"target_sizes": [pil.size[::-1]]}
    if model.config.model_type == "zoedepth":
        sizes["source_sizes"] = sizes["target_sizes"]  # ZoeDepth's documented call: strip the input padding
    return processor.post_process_depth_estimation(out, **sizes)[0]["predicted_depth"].numpy()


def close(a: np.ndarray, b: np.ndarray) -> None:
    scale = max(float(np.abs(b).max()), 1e-12)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("backend, folder", [("dpt", "dpt"), ("dpt", "zoe"), ("depth_anything", "da_relative"),
                                             ("depth_anything", "da_metric")])
def test_map_covers_a_non_square_image_and_equals_the_library(registry, checkpoints, monkeypatch, backend, folder):
    """Given a 70x40 image, when depth runs, then the map is 70x40 and equals the library's own result."""
    monkeypatch.setenv(env_name(backend, "model"), str(checkpoints / folder))
    image = picture(70, 40)
    dm = registry.get("depth")(registry, image=image)
    assert (dm.width, dm.height) == (70, 40) and dm.array.dtype == np.float32
    close(dm.array, reference_depth(checkpoints / folder, image.pil))


def test_a_crop_gets_a_map_over_the_crop_grid(registry, checkpoints, monkeypatch):
    """Given a crop of a 90x60 image, when depth runs on it, then the map covers the crop's 50x30 grid
    and equals depth of those pixels alone."""
    monkeypatch.setenv("VISTRACE_DPT_MODEL", str(checkpoints / "dpt"))
    image = picture(90, 60, seed=1)
    crop = image.crop(Box(20, 10, 70, 40))
    dm = registry.get("depth")(registry, image=crop)
    assert (dm.width, dm.height) == crop.size == (50, 30)
    alone = registry.get("depth")(registry, image=Image(crop.pil.copy()))
    close(dm.array, alone.array)
    close(dm.array, reference_depth(checkpoints / "dpt", crop.pil))


@pytest.mark.parametrize("backend, folder, convention, unit, why", [
    ("dpt", "dpt", "larger_is_nearer", "relative", "inverse depth"),
    ("dpt", "zoe", "larger_is_farther", "m", "ZoeDepth"),
    ("depth_anything", "da_relative", "larger_is_nearer", "relative", "depth_estimation_type='relative'"),
    ("depth_anything", "da_metric", "larger_is_farther", "m", "depth_estimation_type='metric'"),
])
def test_convention_follows_the_config_and_the_reason_is_traced(registry, checkpoints, monkeypatch, backend, folder,
                                                                convention, unit, why):
    """Given a relative or metric checkpoint, when a program asks for depth, then the map's convention and
    unit follow the config and the trace records why."""
    monkeypatch.setenv(env_name(backend, "model"), str(checkpoints / folder))
    run = vistrace.run("d = depth(image)\nresult = d.convention", registry=registry, cache=False,
                       image=picture(48, 32))
    assert run.ok, run.error
    dm = run.recorder.values[1]
    assert (dm.convention, dm.unit) == (convention, unit)
    step = run.trace.steps[0]
    assert step.backend == backend and why in step.reason and convention in step.reason


def test_metric_depth_is_in_metres_up_to_max_depth(registry, checkpoints, monkeypatch):
    """Given the metric checkpoint (sigmoid x max_depth 20 m), then every depth lies in 0..20 m (bicubic
    upsampling may overshoot by a hair)."""
    monkeypatch.setenv("VISTRACE_DEPTH_ANYTHING_MODEL", str(checkpoints / "da_metric"))
    dm = registry.get("depth")(registry, image=picture(40, 40, seed=3))
    assert -0.5 <= dm.min() <= dm.max() <= 20.5


def test_the_convention_setting_overrides_the_config(registry, checkpoints, monkeypatch):
    """Given a DPT fine-tuned for metric depth (its config cannot say), when the convention setting says
    larger_is_farther and the unit 'm', then the map says so and the trace names the setting."""
    monkeypatch.setenv("VISTRACE_DPT_MODEL", str(checkpoints / "dpt"))
    monkeypatch.setenv("VISTRACE_DPT_CONVENTION", "larger_is_farther")
    monkeypatch.setenv("VISTRACE_DPT_UNIT", "m")
    run = vistrace.run("d = depth(image)\nresult = d.unit", registry=registry, cache=False, image=picture(32, 32))
    assert run.ok, run.error
    dm = run.recorder.values[1]
    assert (dm.convention, dm.unit) == ("larger_is_farther", "m")
    assert "VISTRACE_DPT_CONVENTION" in run.trace.steps[0].reason


@pytest.mark.parametrize("backend, folder, sizes", [
    ("dpt", "dpt", [(70, 40), (33, 57)]),                      # fixed 64x64 input: one forward pass
    ("dpt", "zoe", [(70, 40), (70, 40)]),                      # ZoeDepth pads by size: same size, one pass
    ("depth_anything", "da_relative", [(70, 40), (56, 56)]),   # aspect kept: one pass per input shape
    ("depth_anything", "da_metric", [(70, 40), (35, 20)]),     # same aspect: one pass
])
def test_a_batch_of_two_equals_single_calls(checkpoints, monkeypatch, backend, folder, sizes):
    """Given two images (of different sizes where the processor allows), when run_batch maps them, then
    each map has its own image's size and equals a single call; images of one input shape share a forward pass."""
    monkeypatch.setenv(env_name(backend, "model"), str(checkpoints / folder))
    b = next(x for x in hf_depth.backends() if x.name == backend)
    images = [picture(w, h, seed=i) for i, (w, h) in enumerate(sizes)]
    passes = []
    hook = b.loaded().model.register_forward_hook(lambda mod, args, kwargs, out: passes.append(
        kwargs["pixel_values"].shape[0]), with_kwargs=True)
    try:
        maps = b.run_batch(images)
    finally:
        hook.remove()
    one_shape = folder != "da_relative"
    assert passes == ([2] if one_shape else [1, 1])
    for im, dm in zip(images, maps):
        assert (dm.width, dm.height) == im.size
        close(dm.array, b.run(image=im).array)


def test_a_bfloat16_setting_loads_half_precision(checkpoints, monkeypatch):
    """Given dtype = bfloat16, when depth runs, then the model holds bfloat16 weights and the map is
    float32, close to the float32 result."""
    monkeypatch.setenv("VISTRACE_DPT_MODEL", str(checkpoints / "dpt"))
    b = hf_depth.DptBackend()
    image = picture(40, 30, seed=5)
    full = b.run(image=image)
    monkeypatch.setenv("VISTRACE_DPT_DTYPE", "bfloat16")
    half = b.run(image=image)
    assert next(b.loaded().model.parameters()).dtype == torch.bfloat16
    assert half.array.dtype == np.float32 and half.array.shape == full.array.shape
    assert np.abs(half.array - full.array).max() <= 0.1 * max(float(np.abs(full.array).max()), 1e-6)


@pytest.mark.parametrize("setting, value, message", [
    (None, None, "VISTRACE_DPT_MODEL"),
    ("MODEL", "/nonexistent/dpt-folder", "nothing is downloaded"),
    ("MODEL", "Intel/dpt-not-in-cache", "neither a local folder nor in the Hugging Face cache"),
    ("MODEL", "<da_relative>", "'depth_anything' model"),
    ("MODEL", "<no_config>", "no config.json"),
    ("DTYPE", "float13", "setting 'dtype'"),
    ("CONVENTION", "nearer", "setting 'convention'"),
])
def test_clear_errors_for_missing_or_wrong_checkpoints(registry, checkpoints, monkeypatch, tmp_path, setting, value,
                                                       message):
    """Given no model, a missing folder or id, a checkpoint of another kind or a bad setting, when depth
    runs, then BackendUnavailable says what is wrong and which setting fixes it."""
    if setting not in (None, "MODEL"):
        monkeypatch.setenv("VISTRACE_DPT_MODEL", str(checkpoints / "dpt"))
    if setting is not None:
        if value == "<no_config>":
            (tmp_path / "empty").mkdir()
            value = str(tmp_path / "empty")
        elif value and value.startswith("<"):
            value = str(checkpoints / value.strip("<>"))
        monkeypatch.setenv(f"VISTRACE_DPT_{setting}", value)
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(hf_depth.DptBackend())
    with pytest.raises(BackendUnavailable, match=message) as err:
        reg.get("depth")(reg, image=picture(32, 32))
    assert "dpt" in str(err.value)
    direct = hf_depth.DptBackend()
    assert not direct.availability().ok
    if setting == "MODEL" and value.endswith("da_relative"):
        assert "VISTRACE_DEPTH_ANYTHING_MODEL" in str(err.value)


def test_unconfigured_depth_points_at_stereo_depth(registry):
    """Given both depth backends registered but nothing configured, when depth runs, then the error names
    both settings and the weight-free stereo_depth alternative."""
    with pytest.raises(BackendUnavailable) as err:
        registry.get("depth")(registry, image=picture(32, 32))
    text = str(err.value)
    assert "stereo_depth" in text and "VISTRACE_DPT_MODEL" in text and "VISTRACE_DEPTH_ANYTHING_MODEL" in text


def test_importing_the_module_is_light():
    """Given a fresh interpreter, when hf_depth is imported, then transformers and torch are not."""
    import subprocess
    import sys

    code = ("import sys; import vistrace.tools.adapters.hf_depth; "
            "print('transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
