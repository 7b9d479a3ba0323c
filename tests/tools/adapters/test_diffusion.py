"""Given diffusers pipelines the user brings (here REAL Stable Diffusion and GLIGEN architectures with tiny
random weights, saved with ``save_pretrained`` as users have them), when ``generate`` runs through the
``diffusers`` or ``gligen`` backend, then images have exactly the requested size, seeds make them
reproducible, layouts reach GLIGEN as normalised boxes, a plain pipeline refuses a layout, batches equal
single runs, and missing weights are clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from vistrace.errors import BackendUnavailable, ToolArgumentError
from vistrace.tools import Registry
from vistrace.tools.adapters import diffusion
from vistrace.tools.builtin import register_builtin
from vistrace.tools.model_cache import MODELS
from vistrace.values import Box, Detections

from .tiny_tokenizers import CLIP_VOCAB_SIZE, clip_tokenizer


pytestmark = pytest.mark.usefixtures("one_thread")

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

STEPS = 2
GSTEPS = 4  # GLIGEN grounds int(0.3 * steps) steps: 4 steps ground 1, 2 steps none (refused)
W, H = 96, 64  # non-square, both multiples of 8, within the tool's 64..2048


# tiny real pipelines ---------------------------------------------------------------------------
def tiny_components(folder: Path, *, gated: bool = False, safety: bool = False) -> dict:
    """The components of a Stable Diffusion pipeline, tiny (as diffusers' own pipeline tests build them)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, **({"attention_type": "gated"} if gated else {}))
    if gated:  # GLIGEN's gates start at 0 (no effect); open them as training would, so boxes matter
        for name, p in unet.named_parameters():
            if name.endswith(("alpha_attn", "alpha_dense")):
                p.data.fill_(1.0)
    # four blocks: vae_scale_factor 8, as in Stable Diffusion
    vae = AutoencoderKL(block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=4, sample_size=64)
    text = CLIPTextModel(CLIPTextConfig(
        bos_token_id=CLIP_VOCAB_SIZE - 2, eos_token_id=CLIP_VOCAB_SIZE - 1, pad_token_id=CLIP_VOCAB_SIZE - 1,
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=CLIP_VOCAB_SIZE,
        max_position_embeddings=77, projection_dim=32))
    tokenizer = clip_tokenizer(folder / "_tok")
    tokenizer.model_max_length = 77
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    checker, extractor = (tiny_safety_checker() if safety else (None, None))
    return dict(unet=unet, vae=vae, text_encoder=text, tokenizer=tokenizer, scheduler=scheduler,
                safety_checker=checker, feature_extractor=extractor, requires_safety_checker=safety)


def tiny_safety_checker():
    """A tiny CLIP safety checker whose thresholds flag every image (cosine >= -1 > -2)."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    cfg = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1,
                                      vocab_size=CLIP_VOCAB_SIZE, bos_token_id=CLIP_VOCAB_SIZE - 2,
                                      eos_token_id=CLIP_VOCAB_SIZE - 1, pad_token_id=CLIP_VOCAB_SIZE - 1),
                     vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=1,
                                        image_size=32, patch_size=8),
                     projection_dim=32)
    checker = StableDiffusionSafetyChecker(cfg)
    checker.concept_embeds_weights.data.fill_(-2.0)
    extractor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    return checker, extractor


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """save_pretrained folders: plain SD, GLIGEN, and plain SD with a (flag-everything) safety checker."""
    from diffusers import StableDiffusionGLIGENPipeline, StableDiffusionPipeline

    root = tmp_path_factory.mktemp("diffusion")
    out = {}
    for name, cls, kw in (("sd", StableDiffusionPipeline, {}), ("gligen", StableDiffusionGLIGENPipeline, {"gated": True}),
                          ("sd_safety", StableDiffusionPipeline, {"safety": True})):
        pipe = cls(**tiny_components(root, **kw))
        pipe.save_pretrained(root / name)
        out[name] = root / name
    shutil.rmtree(root / "_tok")
    return out


@pytest.fixture
def reg(models, monkeypatch) -> Registry:
    monkeypatch.setenv("VISTRACE_DIFFUSERS_MODEL", str(models["sd"]))
    monkeypatch.setenv("VISTRACE_GLIGEN_MODEL", str(models["gligen"]))
    monkeypatch.setenv("VISTRACE_DIFFUSERS_DEVICE", "cpu")
    monkeypatch.setenv("VISTRACE_GLIGEN_DEVICE", "cpu")
    r = Registry()
    register_builtin(r)
    for b in diffusion.backends():
        r.add_backend(b)
    return r


def generate(reg, **kw):
    return reg.get("generate").invoke({"steps": STEPS, "width": W, "height": H, **kw}, reg)


def pixels(image) -> np.ndarray:
    return np.asarray(image.pil, dtype=np.int16)


# plain text-to-image -------------------------------------------------------------------------------
def test_diffusers_generates_the_requested_size_reproducibly(reg, models):
    """Given a plain SD pipeline folder, when the same seed runs twice and another seed once, then the
    images are exactly WxH, equal for the same seed, different for another, and the source says how."""
    a, info = generate(reg, prompt="a red cat", seed=3)
    b, _ = generate(reg, prompt="a red cat", seed=3)
    c, _ = generate(reg, prompt="a red cat", seed=4)
    assert info["backend"] == "diffusers" and "gligen" in info["reason"]  # preferred over gligen for a plain prompt
    assert a.size == (W, H) and a.pil.mode == "RGB"
    assert np.array_equal(pixels(a), pixels(b))
    assert np.abs(pixels(a) - pixels(c)).mean() > 1
    assert str(models["sd"]) in a.source and "seed 3" in a.source and f"{STEPS} steps" in a.source
    assert "StableDiffusionPipeline" in a.source and "no safety checker" in a.source
    assert "diffusers text-to-image" in info["model"] and "float32" in info["model"]


@pytest.mark.parametrize("width, height, message", [
    (100, 64, "width 100 (use 96 or 104)"),
    (96, 70, "height 70 (use 64 or 72)"),
    (65, 127, "width 65 (use 64 or 72), height 127 (use 120 or 128)"),
])
def test_sizes_off_the_latent_grid_are_refused_with_the_nearest_valid_ones(reg, width, height, message):
    """Given sizes that are not multiples of 8 (the VAE grid), then the error names the nearest valid sizes."""
    with pytest.raises(ToolArgumentError, match="multiples of 8") as err:
        generate(reg, prompt="a cat", width=width, height=height)
    assert message in str(err.value)


def test_diffusers_refuses_a_layout_and_names_gligen_and_layout_sketch(reg, monkeypatch):
    """Given only the plain pipeline configured, when a layout is asked for, then generate refuses (it never
    drops the boxes silently) and the reason names GLIGEN and layout_sketch."""
    monkeypatch.delenv("VISTRACE_GLIGEN_MODEL")
    layout = Detections([Box(8, 8, 48, 40, "cat")], image_size=(W, H))
    with pytest.raises(BackendUnavailable) as err:
        generate(reg, prompt="a cat", layout=layout)
    text = str(err.value)
    assert "gligen" in text.lower() and "layout_sketch" in text and "VISTRACE_GLIGEN_MODEL" in text
    ok, why = diffusion.DiffusersBackend().suits({"layout": layout})
    assert not ok and "layout_sketch" in why
    with pytest.raises(ToolArgumentError, match="layout_sketch"):
        diffusion.DiffusersBackend().run(prompt="a cat", layout=layout, width=W, height=H, steps=STEPS)


def test_a_batch_of_prompts_equals_the_prompts_one_at_a_time(reg):
    """Given two prompts and two seeds, when run as one batch (one pipeline call), then each image equals the
    one the same prompt and seed give alone."""
    backend = diffusion.DiffusersBackend()
    batch = backend.run_batch(["a cat", "a blue dog"], seeds=[1, 2], width=W, height=H, steps=STEPS)
    singles = [backend.run(prompt=p, seed=s, width=W, height=H, steps=STEPS) for p, s in (("a cat", 1), ("a blue dog", 2))]
    assert [im.size for im in batch] == [(W, H)] * 2
    for b, s in zip(batch, singles):
        assert np.abs(pixels(b) - pixels(s)).max() <= 1  # float summation order only
        assert b.source == s.source
    assert np.abs(pixels(batch[0]) - pixels(batch[1])).mean() > 1


@pytest.mark.parametrize("kwargs, message", [
    ({"prompts": []}, "non-empty"), ({"prompts": ["a cat", " "]}, "non-empty"),
    ({"prompts": ["a", "b"], "seeds": [1]}, "2 prompts but 1 seeds"), ({"prompts": ["a"], "seeds": [1.5]}, "seed"),
    ({"prompts": ["a"], "steps": 0}, "steps"),
])
def test_run_batch_rejects_bad_arguments(reg, kwargs, message):
    """Given bad batch arguments, then run_batch says what is wrong before loading anything."""
    with pytest.raises(ToolArgumentError, match=message):
        diffusion.DiffusersBackend().run_batch(**{"width": W, "height": H, **kwargs})


def test_the_safety_checker_is_kept_and_its_flags_are_reported(reg, models, monkeypatch):
    """Given a pipeline whose safety checker flags the image, then the black image comes back with a source
    that says it was flagged and blacked out (not a silent black image)."""
    monkeypatch.setenv("VISTRACE_DIFFUSERS_MODEL", str(models["sd_safety"]))
    image, _ = generate(reg, prompt="a cat", seed=0)
    assert image.size == (W, H)
    assert "NSFW FLAGGED" in image.source and "blacked out" in image.source
    assert pixels(image).max() == 0


def test_dtype_setting_is_applied(reg, monkeypatch):
    """Given dtype = bfloat16, then the pipeline is loaded in bfloat16 and still gives the requested size."""
    monkeypatch.setenv("VISTRACE_DIFFUSERS_DTYPE", "bf16")
    backend = diffusion.DiffusersBackend()
    assert backend.dtype_name() == "bfloat16" and "bfloat16" in backend.model
    assert backend.loaded().unet.dtype == torch.bfloat16
    image, _ = generate(reg, prompt="a cat", seed=0)
    assert image.size == (W, H) and "bfloat16" in image.source


def test_an_invalid_dtype_is_a_clear_error(reg, monkeypatch):
    """Given dtype = int8, then availability-style errors name the setting and the valid values."""
    monkeypatch.setenv("VISTRACE_DIFFUSERS_DTYPE", "int8")
    with pytest.raises(BackendUnavailable, match="dtype setting 'int8'.*float16") as err:
        diffusion.DiffusersBackend().run(prompt="a cat", width=W, height=H, steps=STEPS)
    assert "VISTRACE_DIFFUSERS_DTYPE" in err.value.fix


def test_a_model_id_in_the_hugging_face_cache_is_used_without_download(reg, models, tmp_path, monkeypatch):
    """Given the pipeline only as a snapshot in the user's HF cache, when the setting names its id, then it loads
    from there (local_files_only) and generates."""
    snap = tmp_path / "hub" / "models--tiny--sd" / "snapshots" / "abc123"
    shutil.copytree(models["sd"], snap)
    (tmp_path / "hub" / "models--tiny--sd" / "refs").mkdir()
    (tmp_path / "hub" / "models--tiny--sd" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VISTRACE_DIFFUSERS_MODEL", "tiny/sd")
    image, info = generate(reg, prompt="a cat", seed=3)
    reference, _ = generate(reg, prompt="a cat", seed=3, width=W, height=H)
    assert image.size == (W, H) and "tiny/sd" in image.source and "tiny/sd" in info["model"]
    assert np.array_equal(pixels(image), pixels(reference))


# GLIGEN -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("box, size, expected", [
    (Box(0, 0, 96, 64), (96, 64), [0.0, 0.0, 1.0, 1.0]),
    (Box(24, 16, 72, 48), (96, 64), [0.25, 0.25, 0.75, 0.75]),
    (Box(-10, 32, 48, 80), (96, 64), [0.0, 0.5, 0.5, 1.0]),   # clamped to the canvas
    (Box(128, 0, 256, 512), (512, 512), [0.25, 0.0, 0.5, 1.0]),
])
def test_layout_boxes_are_normalised_by_width_and_height(box, size, expected):
    """Given a box in output pixels, then GLIGEN gets xyxy divided by width/height, clamped to 0..1."""
    got = diffusion.normalised_boxes(Detections([box.replace(label="x")]), *size)
    assert got == [pytest.approx(expected)]


def test_gligen_grounds_the_layout_phrases_in_normalised_boxes(reg, models):
    """Given a two-box layout, when generate runs, then GLIGEN is chosen, its position net receives the
    normalised boxes with one mask per box, the image has the requested size, and the layout changes it."""
    layout = Detections([Box(0, 0, 48, 32, "cat"), Box(48, 16, 96, 64, "dog")], image_size=(W, H))
    pipe = diffusion.GligenBackend().loaded()
    seen = []
    hook = pipe.unet.position_net.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append({k: v.detach().clone() for k, v in kwargs.items()}), with_kwargs=True)
    try:
        image, info = generate(reg, prompt="a cat and a dog", layout=layout, seed=5, steps=GSTEPS)
    finally:
        hook.remove()
    assert info["backend"] == "gligen" and image.size == (W, H)
    assert seen, "the GLIGEN position net was not called"
    boxes, masks = seen[0]["boxes"], seen[0]["masks"]
    assert torch.allclose(boxes[-1, :2], torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.25, 1.0, 1.0]]))
    assert masks[-1].sum() == 2 and boxes.shape[1] == diffusion.GLIGEN_MAX_BOXES
    assert "GLIGEN layout of 2 boxes (cat, dog), beta 0.3 (grounded on 1 of 4 steps)" in image.source
    assert "seed 5" in image.source and "4 steps" in image.source
    again, _ = generate(reg, prompt="a cat and a dog", layout=layout, seed=5, steps=GSTEPS)
    assert np.array_equal(pixels(image), pixels(again))
    moved = Detections([Box(48, 32, 96, 64, "cat"), Box(0, 0, 40, 40, "dog")], image_size=(W, H))
    other, _ = generate(reg, prompt="a cat and a dog", layout=moved, seed=5, steps=GSTEPS)
    assert not np.array_equal(pixels(image), pixels(other))  # the boxes steer the image (runs are deterministic)


def test_gligen_refuses_too_few_steps_to_ground_anything(reg):
    """Given beta 0.3 and 2 steps, GLIGEN would ground no step (int(0.6) = 0) and ignore the layout: refused,
    naming the smallest step count that grounds."""
    layout = Detections([Box(8, 8, 56, 48, "cat")], image_size=(W, H))
    with pytest.raises(ToolArgumentError, match="2 steps ground none.*at least 4 steps"):
        generate(reg, prompt="a cat", layout=layout, steps=2)


def test_gligen_without_a_layout_runs_the_plain_prompt(reg, monkeypatch):
    """Given only GLIGEN configured, when no layout is given, then it generates from the prompt alone, the same
    for the same seed, and the source says there was no layout."""
    monkeypatch.delenv("VISTRACE_DIFFUSERS_MODEL")
    a, info = generate(reg, prompt="a cat", seed=1)
    b, _ = generate(reg, prompt="a cat", seed=1)
    assert info["backend"] == "gligen" and a.size == (W, H)
    assert np.array_equal(pixels(a), pixels(b)) and "no layout" in a.source
    batch = diffusion.GligenBackend().run_batch(["a cat", "a dog"], seeds=[1, 2], width=W, height=H, steps=STEPS)
    assert np.abs(pixels(batch[0]) - pixels(a)).max() <= 1


def test_gligen_batch_with_a_layout_equals_single_runs(reg):
    """Given one layout for two prompts, then the batch equals the prompts one at a time."""
    layout = Detections([Box(8, 8, 56, 48, "cat")], image_size=(W, H))
    g = diffusion.GligenBackend()
    batch = g.run_batch(["a cat", "a cat on grass"], seeds=[7, 8], layout=layout, width=W, height=H, steps=GSTEPS)
    singles = [g.run(prompt=p, layout=layout, seed=s, width=W, height=H, steps=GSTEPS)
               for p, s in (("a cat", 7), ("a cat on grass", 8))]
    for b, s in zip(batch, singles):
        assert np.abs(pixels(b) - pixels(s)).max() <= 1


def test_gligen_refuses_more_boxes_than_it_can_ground(reg):
    """Given 31 boxes (GLIGEN grounds at most 30), then generate refuses instead of dropping some."""
    layout = Detections([Box(i * 3, 0, i * 3 + 3, 8, f"thing {i}") for i in range(31)], image_size=(W, H))
    with pytest.raises(ToolArgumentError, match="at most 30 boxes, the layout has 31"):
        generate(reg, prompt="many things", layout=layout)


def test_gligen_scheduled_sampling_beta_setting(reg, monkeypatch):
    """Given scheduled_sampling_beta = 1 (grounding on every step), then it is used and named."""
    layout = Detections([Box(8, 8, 56, 48, "cat")], image_size=(W, H))
    monkeypatch.setenv("VISTRACE_GLIGEN_SCHEDULED_SAMPLING_BETA", "1")
    image, info = generate(reg, prompt="a cat", layout=layout, seed=0)
    assert "beta 1 (grounded on 2 of 2 steps)" in image.source and "beta 1" in info["model"]


@pytest.mark.parametrize("value", ["0", "2", "-0.5", "lots"])
def test_gligen_scheduled_sampling_beta_out_of_range_is_refused(reg, monkeypatch, value):
    """Given a beta outside (0, 1] (0 would switch grounding off), then the error names the setting."""
    layout = Detections([Box(8, 8, 56, 48, "cat")], image_size=(W, H))
    monkeypatch.setenv("VISTRACE_GLIGEN_SCHEDULED_SAMPLING_BETA", value)
    with pytest.raises(BackendUnavailable, match=r"scheduled_sampling_beta .* must be a number in \(0, 1\]"):
        generate(reg, prompt="a cat", layout=layout, seed=0)


# weights errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend_cls, env", [(diffusion.DiffusersBackend, "VISTRACE_DIFFUSERS_MODEL"),
                                              (diffusion.GligenBackend, "VISTRACE_GLIGEN_MODEL")])
@pytest.mark.parametrize("value, message", [
    (None, "no weights configured"),
    ("{tmp}/nowhere", "neither a local folder nor in the Hugging Face cache"),
    ("nobody/no-such-model", "neither a local folder nor in the Hugging Face cache"),
    ("{tmp}", "not a diffusers pipeline folder"),
])
def test_missing_weights_are_clear_errors(backend_cls, env, value, message, tmp_path, monkeypatch):
    """Given the model unset, missing, not cached or not a pipeline folder, then the backend is unavailable with
    a message naming what is wrong and a fix naming the environment variable."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    if value is None:
        monkeypatch.delenv(env, raising=False)
    else:
        monkeypatch.setenv(env, value.format(tmp=tmp_path))
    backend = backend_cls()
    avail = backend.availability()
    assert not avail.ok and message in avail.reason and env in avail.fix
    with pytest.raises(BackendUnavailable, match=message):
        backend.run(prompt="a cat", width=W, height=H, steps=STEPS)
    r = Registry()
    register_builtin(r)
    r.add_backend(backend)
    with pytest.raises(BackendUnavailable, match="layout_sketch"):  # the tool's hint for the no-weights case
        r.get("generate")(r, prompt="a cat", width=W, height=H, steps=STEPS)


def test_weights_of_the_wrong_kind_are_named(models, monkeypatch):
    """Given GLIGEN weights for the plain backend, or plain weights for GLIGEN, then each says which to use."""
    monkeypatch.setenv("VISTRACE_DIFFUSERS_MODEL", str(models["gligen"]))
    monkeypatch.setenv("VISTRACE_GLIGEN_MODEL", str(models["sd"]))
    with pytest.raises(BackendUnavailable, match="GLIGEN pipeline") as err:
        diffusion.DiffusersBackend().loaded()
    assert "VISTRACE_GLIGEN_MODEL" in err.value.fix
    with pytest.raises(BackendUnavailable, match="no GLIGEN text-box grounding"):
        diffusion.GligenBackend().loaded()


def test_importing_the_adapter_is_light():
    """Given a fresh interpreter, when the adapter module is imported, then torch and diffusers are not."""
    import subprocess
    import sys

    code = ("import sys; import vistrace.tools.adapters.diffusion as d; d.backends(); "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_models_are_loaded_once_per_setting(reg):
    """Given repeated calls, then the pipeline is loaded once (the process-wide model cache)."""
    generate(reg, prompt="a cat", seed=0)
    generate(reg, prompt="a dog", seed=1)
    keys = [k for k in MODELS.loads if k.startswith("diffusers:") and "float32" in k]
    assert keys and all(MODELS.loads[k] == 1 for k in keys)
