"""``generate`` by diffusers pipelines the user brings: plain text-to-image, and GLIGEN for layouts.

Two backends, both over a pipeline folder as ``save_pretrained`` writes it (``model_index.json`` plus
one sub-folder per component), or a model id already in the user's Hugging Face cache; loading is
``local_files_only=True``, so nothing is ever downloaded:

- ``diffusers`` (``[backends.diffusers] model = ...``): any text-to-image pipeline diffusers knows
  (``AutoPipelineForText2Image``, else ``DiffusionPipeline``). It cannot place objects, so it
  *refuses* a layout (the reason names GLIGEN and ``layout_sketch``) instead of ignoring it.
- ``gligen`` (``[backends.gligen] model = ...``): ``StableDiffusionGLIGENPipeline`` (text-box
  grounding): each layout label is a phrase drawn inside its box; without a layout it runs the same
  weights as a plain Stable Diffusion pipeline.

Optional settings of both: ``device``, ``dtype`` (``float16`` on CUDA and ``float32`` on CPU unless
set), ``variant`` (e.g. ``fp16`` for ``*.fp16.safetensors`` files); GLIGEN also takes
``scheduled_sampling_beta``.

Facts used (diffusers 0.42.1, the version installed here):

- The Stable Diffusion pipelines (plain and GLIGEN) refuse sizes that are not multiples of 8
  (``check_inputs``); the latents are ``size / pipe.vae_scale_factor``. We refuse other sizes up
  front and name the nearest valid ones, rather than let the pipeline fail or resize.
- GLIGEN grounds at most 30 boxes (``max_objs = 30`` in ``StableDiffusionGLIGENPipeline.__call__``);
  beyond that the pipeline drops boxes with only a warning, so we refuse instead. Its boxes are
  ``[xmin, ymin, xmax, ymax]`` in 0..1 of the output image.
- ``gligen_scheduled_sampling_beta`` defaults to 0.3 in the pipeline's documented signature (the
  "scheduled sampling" of GLIGEN, Li et al. 2023, arXiv:2301.07093): the grounding layers act on
  the first 30 % of the denoising steps.
- A pipeline with a safety checker returns a black image for each image it flags
  (``nsfw_content_detected``); we keep the checker and say so in the image's source.

Seeds: one ``torch.Generator(device).manual_seed(seed)`` per image, so a batch of prompts gives the
same images as the prompts one at a time.
"""

from __future__ import annotations

import json
import math
import weakref
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from vistrace.errors import BackendUnavailable, ToolArgumentError, ToolError
from vistrace.settings import env_name
from vistrace.values import Detections, Image

from ..backends import Backend
from ..model_cache import MODELS
from .base import AdapterBackend, torch_bytes, weights_fingerprint

GLIGEN_MAX_BOXES = 30       # StableDiffusionGLIGENPipeline.__call__: max_objs = 30 (diffusers 0.42.1)
GLIGEN_DEFAULT_BETA = 0.3   # gligen_scheduled_sampling_beta default, diffusers GLIGEN pipeline docs
SD_SIZE_MULTIPLE = 8        # StableDiffusion*Pipeline.check_inputs: height and width divisible by 8
DTYPE_NAMES = {"float16": "float16", "fp16": "float16", "half": "float16", "bfloat16": "bfloat16",
               "bf16": "bfloat16", "float32": "float32", "fp32": "float32", "float": "float32"}
SEED_RANGE = (-(2 ** 63), 2 ** 64 - 1)  # what torch.Generator.manual_seed accepts
_PLAIN: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()  # GLIGEN pipe -> its plain SD view


# size rule ------------------------------------------------------------------------------------
def size_multiple(pipe: Any) -> int:
    """The multiple that width and height must be for this pipeline.

    Stable Diffusion pipelines check for 8 whatever the VAE; the latents are ``size /
    vae_scale_factor``; transformer pipelines (SD3, Flux, PixArt) also cut the latents into 2x2
    patches, so their pixels come in multiples of ``2 * vae_scale_factor``.
    """
    factor = int(getattr(pipe, "vae_scale_factor", None) or SD_SIZE_MULTIPLE)
    multiple = math.lcm(SD_SIZE_MULTIPLE, factor)
    if getattr(pipe, "transformer", None) is not None:
        multiple = math.lcm(multiple, 2 * factor)
    return multiple


def nearest_sizes(value: int, multiple: int) -> list[int]:
    """The valid sizes next to ``value`` (one below, one above; never below ``multiple``)."""
    low = (value // multiple) * multiple
    return sorted({max(multiple, low), low + multiple})


def check_size_multiple(width: int, height: int, multiple: int, who: str) -> None:
    """ToolArgumentError naming the nearest valid sizes when width or height is not a multiple."""
    bad = [(name, v) for name, v in (("width", width), ("height", height)) if v % multiple]
    if bad:
        parts = [f"{name} {v} (use {' or '.join(str(s) for s in nearest_sizes(v, multiple))})" for name, v in bad]
        raise ToolArgumentError(f"{who} needs width and height in multiples of {multiple} (the VAE's latent grid): "
                                + ", ".join(parts))


# layouts --------------------------------------------------------------------------------------
def normalised_boxes(layout: Detections, width: int, height: int) -> list[list[float]]:
    """The layout's boxes as GLIGEN takes them: ``[x1, y1, x2, y2]`` divided by width/height, in 0..1."""
    def unit(v: float, side: int) -> float:
        return min(1.0, max(0.0, v / side))

    return [[unit(b.x1, width), unit(b.y1, height), unit(b.x2, width), unit(b.y2, height)] for b in layout]


def check_gligen_layout(layout: Detections) -> None:
    if len(layout) > GLIGEN_MAX_BOXES:
        raise ToolArgumentError(f"GLIGEN grounds at most {GLIGEN_MAX_BOXES} boxes, the layout has {len(layout)}: "
                                "merge or drop boxes, or split the scene into several generations")


def grounding_steps(beta: float, steps: int) -> int:
    """How many denoising steps GLIGEN grounds: ``int(beta * len(timesteps))`` in the pipeline (len >= steps)."""
    return int(beta * steps)


def check_grounding_steps(beta: float, steps: int) -> None:
    """Refuse step counts so small that no step is grounded (the layout would be silently ignored)."""
    if grounding_steps(beta, steps) < 1:
        need = max(1, math.ceil(1 / beta))
        while grounding_steps(beta, need) < 1:
            need += 1
        raise ToolArgumentError(f"GLIGEN grounds the boxes on the first {beta:g} of the steps: {steps} steps ground "
                                f"none, so the layout would be ignored; use at least {need} steps "
                                "(or raise scheduled_sampling_beta)")


# settings helpers -----------------------------------------------------------------------------
def torch_dtype(name: str):
    import torch

    return getattr(torch, DTYPE_NAMES[name])


def dtype_keyword() -> str:
    """``dtype`` where diffusers resolves it (it deprecates ``torch_dtype``, e.g. 0.42.1), else ``torch_dtype``."""
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"


def pipeline_class_name(path: Path) -> str:
    try:
        return str(json.loads((path / "model_index.json").read_text(encoding="utf-8")).get("_class_name", ""))
    except (OSError, ValueError):
        return ""


class _DiffusionBackend(AdapterBackend):
    """What both diffusers backends share: loading, dtype, seeds, sizes, safety flags, batching."""

    tool = "generate"
    extra = "gen"
    requires = ("diffusers", "transformers", "torch")
    weights_key = "model"
    weights_kind = "hf"
    weights_example: ClassVar[str] = ""

    # settings ----------------------------------------------------------------------------
    def dtype_name(self) -> str:
        value = self.settings().get("dtype")
        if value in (None, ""):
            return "float16" if self.device().startswith("cuda") else "float32"
        name = DTYPE_NAMES.get(str(value).strip().lower())
        if name is None:
            raise BackendUnavailable(
                f"{self.name}: dtype setting '{value}' (from {self.settings().where('dtype')}) is not one of "
                f"{', '.join(sorted(set(DTYPE_NAMES.values())))}",
                fix=f"set dtype = \"float16\" (CUDA) or \"float32\" under [backends.{self.settings_name}], "
                    f"or {env_name(self.settings_name, 'dtype')}=float32")
        return name

    def variant(self) -> str | None:
        value = self.settings().get("variant")
        return str(value) if value not in (None, "") else None

    def options(self) -> dict[str, Any]:
        """Settings that change the pixels besides the weights (part of the model identity)."""
        return {"dtype": self.dtype_name()}

    @property
    def model(self) -> str:  # type: ignore[override]
        base = super().model
        if self.weights_ref() is None:
            return base
        try:
            opts = self.options()
        except BackendUnavailable:
            return base
        return base + " [" + ", ".join(f"{k} {v}" for k, v in opts.items()) + "]"

    # weights -----------------------------------------------------------------------------
    def resolve_weights(self) -> Path:
        path = super().resolve_weights()
        if not (path / "model_index.json").is_file():
            raise BackendUnavailable(
                f"{self.name}: {path} is not a diffusers pipeline folder (no model_index.json; "
                f"setting '{self.weights_key}' from {self.settings().where(self.weights_key)})",
                fix=("save the pipeline with pipe.save_pretrained(FOLDER) (a single .safetensors checkpoint: "
                     "load it once with from_single_file, then save_pretrained), and " + self.setting_hint()))
        return path

    def loaded(self) -> Any:
        """The pipeline, once per (weights, device, dtype, variant) in the process-wide model cache."""
        path = self.resolve_weights()
        dev, dtype, variant = self.device(), self.dtype_name(), self.variant()
        key = f"{self.name}:{path}:{weights_fingerprint(path)}:{dev}:{dtype}:{variant}"
        return MODELS.get(key, lambda: self.load(path, dev), torch_bytes)

    def pretrained_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {dtype_keyword(): torch_dtype(self.dtype_name()), "local_files_only": True}
        if self.variant():
            kw["variant"] = self.variant()
        return kw

    def load_failed(self, path: Path, exc: Exception) -> BackendUnavailable:
        return BackendUnavailable(f"{self.name}: cannot load the pipeline at {path}: {exc}",
                                  fix=("check that every component folder of model_index.json is complete "
                                       f"(nothing is downloaded), or {self.setting_hint()}"))

    def ready(self, pipe: Any, device: str) -> Any:
        pipe = pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # generation --------------------------------------------------------------------------
    def check_batch(self, prompts: list[str], seeds: list[int] | None, seed: int, steps: int) -> list[int]:
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ToolArgumentError(f"{self.name}: every prompt must be a non-empty string, got {prompts!r}")
        seeds = [seed] * len(prompts) if seeds is None else list(seeds)
        if len(seeds) != len(prompts):
            raise ToolArgumentError(f"{self.name}: {len(prompts)} prompts but {len(seeds)} seeds")
        for s in seeds:
            if isinstance(s, bool) or not isinstance(s, int) or not SEED_RANGE[0] <= s <= SEED_RANGE[1]:
                raise ToolArgumentError(f"{self.name}: seed must be an integer in {SEED_RANGE[0]}..{SEED_RANGE[1]}, got {s!r}")
        if not isinstance(steps, int) or steps < 1:
            raise ToolArgumentError(f"{self.name}: steps must be a positive integer, got {steps!r}")
        return seeds

    def generators(self, seeds: list[int]) -> list[Any]:
        import torch

        device = self.device()
        return [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def call_pipeline(self, pipe: Any, prompts: list[str], seeds: list[int], width: int, height: int, steps: int,
                      guidance: float, **extra: Any) -> tuple[list[Any], list[bool] | None]:
        """One pipeline call for the whole batch; returns the PIL images and the safety flags (or None)."""
        check_size_multiple(width, height, size_multiple(pipe), f"{self.name} ({type(pipe).__name__})")
        out = pipe(prompt=list(prompts), height=height, width=width, num_inference_steps=steps,
                   guidance_scale=float(guidance), generator=self.generators(seeds), output_type="pil", **extra)
        images = list(out.images)
        if len(images) != len(prompts):
            raise ToolError(f"{self.name}: the pipeline returned {len(images)} images for {len(prompts)} prompts")
        flags = getattr(out, "nsfw_content_detected", None)
        return images, (list(flags) if flags is not None else None)

    def describe_image(self, pipe: Any, prompt: str, seed: int, steps: int, guidance: float, width: int,
                       height: int, flagged: bool | None, extra: str = "", version: str = "") -> str:
        ref = self.weights_ref()
        text = (f"generated by {self.name} ({type(pipe).__name__}) from {ref} @ {version or self.version}, "
                f"{self.dtype_name()}: "
                f"seed {seed}, {steps} steps, guidance {guidance:g}, {width}x{height}{extra}; prompt {prompt[:80]!r}")
        if getattr(pipe, "safety_checker", None) is None:
            return text + "; no safety checker"
        if flagged:
            return text + ("; NSFW FLAGGED by the pipeline's safety checker: the pixels were blacked out "
                           "(try another prompt or seed)")
        return text + "; safety checker passed"

    def to_images(self, pipe: Any, pils: list[Any], flags: list[bool] | None, prompts: list[str], seeds: list[int],
                  steps: int, guidance: float, width: int, height: int, extra: str = "") -> list[Image]:
        result = []
        version = self.version
        for i, (pil, prompt, seed) in enumerate(zip(pils, prompts, seeds)):
            flagged = bool(flags[i]) if flags is not None else None
            pil = pil.convert("RGB")
            if pil.size != (width, height):
                raise ToolError(f"{self.name}: {type(pipe).__name__} returned {pil.width}x{pil.height}, "
                                f"asked for {width}x{height}")
            result.append(Image(pil, source=self.describe_image(pipe, prompt, seed, steps, guidance, width, height,
                                                                flagged, extra, version)))
        return result

    def run(self, prompt: str, layout: Detections | None = None, width: int = 512, height: int = 512, seed: int = 0,
            steps: int = 30, guidance: float = 7.5) -> Image:
        return self.run_batch([prompt], seeds=[seed], layout=layout, width=width, height=height, steps=steps,
                              guidance=guidance)[0]

    @abstractmethod
    def run_batch(self, prompts: list[str], *, seeds: list[int] | None = None, layout: Detections | None = None,
                  width: int = 512, height: int = 512, seed: int = 0, steps: int = 30,
                  guidance: float = 7.5) -> list[Image]:
        """Several prompts in ONE pipeline call (``seeds[i]`` for prompt i, default ``seed`` for all)."""


class DiffusersBackend(_DiffusionBackend):
    """Plain text-to-image by any diffusers pipeline (Stable Diffusion 1.x/2.x, SDXL, SD3, Flux, ...)."""

    name = "diffusers"
    settings_name = "diffusers"
    family = "diffusers text-to-image"
    weights_example = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    priority = 30

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        if args.get("layout") is not None:
            return False, ("a plain diffusers text-to-image pipeline cannot place a layout of boxes (it would be "
                           "ignored): configure GLIGEN ([backends.gligen] model = \"...\" in vistrace.toml, or "
                           f"{env_name('gligen', 'model')}=...) to ground the boxes, or draw the layout with "
                           "layout_sketch(layout, width, height)")
        return True, f"{self.name}: text-to-image with {self.weights_ref()}"

    def load(self, path: Path, device: str) -> Any:
        import diffusers

        if "GLIGEN" in pipeline_class_name(path):
            raise BackendUnavailable(f"{self.name}: {path} holds a GLIGEN pipeline, which needs a layout",
                                     fix=f"configure it for the gligen backend instead: {env_name('gligen', 'model')}={path}")
        kw = self.pretrained_kwargs()
        try:
            try:
                pipe = diffusers.AutoPipelineForText2Image.from_pretrained(str(path), **kw)
            except ValueError as exc:  # a pipeline class AutoPipeline has no text-to-image mapping for
                if "AutoPipeline" not in str(exc):
                    raise
                pipe = diffusers.DiffusionPipeline.from_pretrained(str(path), **kw)
        except (OSError, ValueError) as exc:
            raise self.load_failed(path, exc) from exc
        return self.ready(pipe, device)

    def run_batch(self, prompts: list[str], *, seeds: list[int] | None = None, layout: Detections | None = None,
                  width: int = 512, height: int = 512, seed: int = 0, steps: int = 30,
                  guidance: float = 7.5) -> list[Image]:
        if layout is not None:
            raise ToolArgumentError(self.suits({"layout": layout})[1])
        seeds = self.check_batch(prompts, seeds, seed, steps)
        import torch

        pipe = self.loaded()
        with torch.inference_mode():
            pils, flags = self.call_pipeline(pipe, prompts, seeds, width, height, steps, guidance)
        return self.to_images(pipe, pils, flags, prompts, seeds, steps, guidance, width, height)


class GligenBackend(_DiffusionBackend):
    """Layout-grounded text-to-image: GLIGEN draws each layout phrase inside its box."""

    name = "gligen"
    settings_name = "gligen"
    family = "GLIGEN (layout-grounded text-to-image)"
    weights_example = "masterful/gligen-1-4-generation-text-box"
    priority = 29  # for a plain prompt a configured plain text-to-image model wins; layouts only suit GLIGEN

    def beta(self) -> float:
        value = self.settings().get("scheduled_sampling_beta")
        if value in (None, ""):
            return GLIGEN_DEFAULT_BETA
        try:
            beta = float(value)
        except (TypeError, ValueError):
            beta = -1.0
        if not 0.0 < beta <= 1.0:  # 0 would switch the grounding off: the layout ignored
            raise BackendUnavailable(
                f"{self.name}: scheduled_sampling_beta '{value}' (from "
                f"{self.settings().where('scheduled_sampling_beta')}) must be a number in (0, 1]",
                fix=f"{env_name('gligen', 'scheduled_sampling_beta')}={GLIGEN_DEFAULT_BETA} (the diffusers default)")
        return beta

    def options(self) -> dict[str, Any]:
        return {**super().options(), "beta": self.beta()}

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        layout = args.get("layout")
        if layout is None:
            return True, f"{self.name}: plain prompt with the GLIGEN weights {self.weights_ref()} (no layout)"
        return True, f"{self.name}: grounds the {len(layout)} layout boxes with {self.weights_ref()}"

    def load(self, path: Path, device: str) -> Any:
        import diffusers

        try:
            pipe = diffusers.StableDiffusionGLIGENPipeline.from_pretrained(str(path), **self.pretrained_kwargs())
        except (OSError, ValueError, TypeError) as exc:
            raise self.load_failed(path, exc) from exc
        cfg = pipe.unet.config
        if getattr(cfg, "attention_type", "default") != "gated" or not hasattr(pipe.unet, "position_net"):
            raise BackendUnavailable(
                f"{self.name}: the UNet at {path} has no GLIGEN text-box grounding (attention_type "
                f"{getattr(cfg, 'attention_type', 'default')!r}, expected 'gated')",
                fix=f"bring GLIGEN text-box weights (e.g. {self.weights_example}); plain models go under [backends.diffusers]")
        if cfg.in_channels != 4:
            raise BackendUnavailable(
                f"{self.name}: the UNet at {path} takes {cfg.in_channels} input channels: a GLIGEN inpainting model",
                fix=f"bring the GLIGEN generation weights (e.g. {self.weights_example})")
        return self.ready(pipe, device)

    @staticmethod
    def plain(pipe: Any) -> Any:
        """The same modules as a plain Stable Diffusion pipeline (the UNet skips grounding without boxes).

        Made once per loaded GLIGEN pipeline; the scheduler is a copy, since the Stable Diffusion
        pipeline may rewrite its scheduler's config when built.
        """
        sd = _PLAIN.get(pipe)
        if sd is None:
            from diffusers import StableDiffusionPipeline

            scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
            sd = StableDiffusionPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                         unet=pipe.unet, scheduler=scheduler, safety_checker=pipe.safety_checker,
                                         feature_extractor=pipe.feature_extractor,
                                         requires_safety_checker=bool(pipe.config.get("requires_safety_checker", False)))
            sd.set_progress_bar_config(disable=True)
            _PLAIN[pipe] = sd
        return sd

    def run_batch(self, prompts: list[str], *, seeds: list[int] | None = None, layout: Detections | None = None,
                  width: int = 512, height: int = 512, seed: int = 0, steps: int = 30,
                  guidance: float = 7.5) -> list[Image]:
        """Several prompts in one call; ``layout`` (if any) is the same for every prompt of the batch."""
        seeds = self.check_batch(prompts, seeds, seed, steps)
        if layout is not None:
            if not len(layout) or any(not b.label for b in layout):
                raise ToolArgumentError(f"{self.name}: a layout needs at least one box, each with a label (its phrase)")
            check_gligen_layout(layout)
        beta = self.beta()
        if layout is not None:
            check_grounding_steps(beta, steps)
        import torch

        pipe = self.loaded()
        with torch.inference_mode():
            if layout is None:
                plain = self.plain(pipe)
                pils, flags = self.call_pipeline(plain, prompts, seeds, width, height, steps, guidance)
                extra = ", no layout"
            else:
                phrases = [b.label for b in layout]
                pils, flags = self.call_pipeline(pipe, prompts, seeds, width, height, steps, guidance,
                                                 gligen_phrases=phrases,
                                                 gligen_boxes=normalised_boxes(layout, width, height),
                                                 gligen_scheduled_sampling_beta=beta)
                shown = ", ".join(phrases[:8]) + (", ..." if len(phrases) > 8 else "")
                extra = (f", GLIGEN layout of {len(phrases)} boxes ({shown}), beta {beta:g} "
                         f"(grounded on {grounding_steps(beta, steps)} of {steps} steps)")
        return self.to_images(pipe, pils, flags, prompts, seeds, steps, guidance, width, height, extra)


def backends() -> list[Backend]:
    return [DiffusersBackend(), GligenBackend()]
