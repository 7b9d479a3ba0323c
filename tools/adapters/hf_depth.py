"""``depth`` by Hugging Face transformers checkpoints the user brings: DPT and Depth-Anything.

Each backend loads a local ``save_pretrained`` folder (or an id already in the user's Hugging Face
cache) with ``AutoImageProcessor`` + ``AutoModelForDepthEstimation`` and ``local_files_only=True``;
nothing is downloaded. The checkpoint's ``config.json`` must be of the backend's kind (``model_type``
``dpt``/``zoedepth`` or ``depth_anything``); another kind is refused, naming the backend that fits it.

The raw ``predicted_depth`` is upsampled to each image's own size by the processor's
``post_process_depth_estimation`` (bicubic, ``align_corners=False``), so the map covers the given
image's pixel grid (a crop's grid for a crop).

Convention, decided from the config and recorded in the trace (``suits``):

- relative inverse-depth models (DPT / MiDaS-style, Depth-Anything ``depth_estimation_type =
  "relative"``) give disparity-like values: ``larger_is_nearer``, unit ``relative``;
- metric heads (Depth-Anything ``depth_estimation_type = "metric"``, a sigmoid scaled by
  ``max_depth`` metres; ZoeDepth, whose metric bins the ``dpt`` backend also loads) give distances:
  ``larger_is_farther``, unit ``m``.

The settings ``convention`` (and ``unit``) override that for checkpoints whose config does not say,
e.g. a DPT fine-tuned for metric depth::

    [backends.dpt]
    model = "Intel/dpt-hybrid-midas"   # a local folder, or an id in your Hugging Face cache
    device = "cuda:0"                  # optional; default CUDA when present
    dtype = "float16"                  # optional: float32 (default), float16, bfloat16

This module also holds what the transformers adapters here share (:class:`HfBackend`): reading
``config.json`` cheaply, refusing a checkpoint of the wrong kind, the ``dtype`` setting, and a
model-cache key that includes the dtype.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, ClassVar

from vistrace.errors import BackendUnavailable
from vistrace.settings import env_name
from vistrace.values import DepthMap, Image

from ..backends import Availability, Backend
from ..model_cache import MODELS
from .base import AdapterBackend, torch_bytes, weights_fingerprint

DTYPES = ("float32", "float16", "bfloat16")
CONVENTIONS = ("larger_is_nearer", "larger_is_farther")


def read_config(path: Path) -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict (plain JSON: no transformers import)."""
    file = path / "config.json"
    if not file.is_file():
        raise BackendUnavailable(f"no config.json in {path}: not a transformers save_pretrained folder",
                                 fix="point the setting at the folder written by `model.save_pretrained(...)`")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackendUnavailable(f"cannot read {file}: {exc}", fix="restore the checkpoint's config.json") from exc
    if not isinstance(data, dict):
        raise BackendUnavailable(f"{file} is not a JSON object", fix="restore the checkpoint's config.json")
    return data


def rgb(image: Image):
    """The image's PIL pixels as RGB (processors expect three channels)."""
    pil = image.pil
    return pil if pil.mode == "RGB" else pil.convert("RGB")


class Loaded:
    """A loaded checkpoint: the model, its processor, its config dict, its dtype and which code path
    serves it (``torch_bytes`` sizes the model)."""

    def __init__(self, model: Any, processor: Any, config: dict[str, Any], dtype: Any, kind: str = ""):
        self.model = model
        self.processor = processor
        self.config = config
        self.dtype = dtype
        self.kind = kind


class HfBackend(AdapterBackend):
    """A transformers checkpoint the user brings: a local folder or an id in the HF cache, of given kinds."""

    weights_kind = "hf"
    weights_key = "model"
    extra = "hf"
    requires = ("transformers", "torch")
    model_types: ClassVar[tuple[str, ...]] = ()     # config.json model_type values this backend loads
    kind_hint: ClassVar[dict[str, str]] = {}        # other model_type -> the backend (settings table) that loads it

    # settings ----------------------------------------------------------------------------
    def dtype_name(self) -> str:
        value = str(self.settings().get("dtype") or "float32").strip().lower()
        value = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}.get(value, value)
        if value not in DTYPES:
            raise BackendUnavailable(
                f"{self.name}: setting 'dtype' = {value!r} (from {self.settings().where('dtype')}) is not one of "
                f"{', '.join(DTYPES)}",
                fix=f"set `dtype = \"float16\"` under [backends.{self.settings_name}], "
                    f"or {env_name(self.settings_name, 'dtype')}=float32")
        return value

    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype_name())

    # the checkpoint's kind ---------------------------------------------------------------
    def checkpoint_config(self, path: Path | None = None) -> dict[str, Any]:
        """``config.json`` of the configured checkpoint; BackendUnavailable when it is of another kind."""
        path = path or self.resolve_weights()
        config = read_config(path)
        self.accept(config, path)
        return config

    def accept(self, config: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another kind (BackendUnavailable naming the backend that loads it)."""
        kind = config.get("model_type")
        if kind not in self.model_types:
            raise self.wrong_kind(path, f"a '{kind}' model (config.json model_type)", self.kind_hint.get(str(kind)))

    def wrong_kind(self, path: Path, what: str, other: str | None) -> BackendUnavailable:
        """The error for a checkpoint of another kind; ``other`` names the backend (settings table) that loads it."""
        where = (f"[backends.{other}] (or {env_name(other, self.weights_key)}=...)" if other
                 else "a backend for its kind")
        return BackendUnavailable(
            f"{self.name}: the checkpoint at {path} is {what}, not {self.family}",
            fix=f"configure it under {where}; for {self.name}, {self.setting_hint()} with a {self.family} checkpoint")

    def availability(self) -> Availability:
        base = super().availability()
        if not base.ok:
            return base
        try:
            self.checkpoint_config()
            self.dtype_name()
            self.check_settings()
        except BackendUnavailable as exc:
            return Availability(False, exc.message, exc.fix)
        return base

    def check_settings(self) -> None:
        """Other settings to validate cheaply (subclasses)."""

    # loading -----------------------------------------------------------------------------
    def place(self, model: Any, device: str) -> Any:
        return model.to(device).eval()

    def loaded(self) -> Any:
        """As :meth:`AdapterBackend.loaded`, with the dtype in the cache key (a float16 model is another model)."""
        path = self.resolve_weights()
        dev = self.device()
        key = f"{self.name}:{path}:{weights_fingerprint(path)}:{dev}:{self.dtype_name()}"
        return MODELS.get(key, lambda: self.load(path, dev), torch_bytes)

    def model_device(self, loaded: Loaded):
        return next(loaded.model.parameters()).device


def depth_convention(config: dict[str, Any]) -> tuple[str, str, str]:
    """(convention, unit, reason) from a depth checkpoint's config."""
    kind = config.get("depth_estimation_type")
    if kind == "metric":
        return ("larger_is_farther", "m",
                f"config depth_estimation_type='metric' (max_depth={config.get('max_depth')} m): distances in metres")
    if config.get("model_type") == "zoedepth":
        bins = config.get("bin_configurations") or [{}]
        span = ", ".join(f"{b.get('min_depth')}..{b.get('max_depth')} m" for b in bins)
        return ("larger_is_farther", "m",
                f"ZoeDepth (model_type 'zoedepth') is a metric head: depth bins {span}")
    if kind == "relative":
        return "larger_is_nearer", "relative", "config depth_estimation_type='relative': relative inverse depth"
    return ("larger_is_nearer", "relative",
            f"a '{config.get('model_type')}' checkpoint whose config states no metric head predicts relative inverse "
            "depth (MiDaS-style)")


class HfDepthBackend(HfBackend):
    """``depth`` by an ``AutoModelForDepthEstimation`` checkpoint; map over the given image's grid."""

    tool = "depth"
    kind_hint = {"dpt": "dpt", "zoedepth": "dpt", "depth_anything": "depth_anything"}

    def check_settings(self) -> None:
        self.convention()

    def convention(self, config: dict[str, Any] | None = None) -> tuple[str, str, str]:
        """(convention, unit, reason): from the config, overridden by the ``convention`` / ``unit`` settings."""
        config = config if config is not None else self.checkpoint_config()
        convention, unit, reason = depth_convention(config)
        s = self.settings()
        override = s.get("convention")
        if override not in (None, ""):
            value = str(override).strip()
            if value not in CONVENTIONS:
                raise BackendUnavailable(
                    f"{self.name}: setting 'convention' = {value!r} (from {s.where('convention')}) is not one of "
                    f"{', '.join(CONVENTIONS)}",
                    fix=f"set {env_name(self.settings_name, 'convention')}=larger_is_farther (metric) or "
                        "larger_is_nearer (inverse depth), or remove it to follow the config")
            if value != convention:
                unit = "relative"  # the config's unit does not carry over to values read the other way
            reason = f"{value} set by 'convention' (from {s.where('convention')}), overriding the config ({reason})"
            convention = value
        if s.get("unit") not in (None, ""):
            unit = str(s.get("unit")).strip()
            reason += f"; unit {unit!r} set by 'unit' (from {s.where('unit')})"
        return convention, unit, reason

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        convention, unit, reason = self.convention()
        return True, f"{self.name}: {self.family} checkpoint; {convention} ({unit}): {reason}"

    def load(self, path: Path, device: str) -> Loaded:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        config = self.checkpoint_config(path)
        dtype = self.torch_dtype()
        try:
            processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise BackendUnavailable(f"{self.name}: cannot load the checkpoint at {path}: {exc}",
                                     fix=f"check the folder (config.json, weights, preprocessor_config.json), or "
                                         f"{self.setting_hint()}") from exc
        return Loaded(self.place(model, device), processor, config, dtype)

    def run(self, image: Image, **_: Any) -> DepthMap:
        return self.run_batch([image])[0]

    def run_batch(self, images: list[Image], **_: Any) -> list[DepthMap]:
        """Depth maps for many images: one forward pass per processed input shape (one when the processor
        resizes to a fixed size; aspect-keeping processors give one per distinct shape), each map
        upsampled to its own image's size."""
        import numpy as np
        import torch

        if not images:
            return []
        m = self.loaded()
        convention, unit, _ = self.convention(m.config)
        pixels = m.processor(images=[rgb(im) for im in images], return_tensors=None)["pixel_values"]
        pixels = [torch.as_tensor(np.asarray(p)) if not isinstance(p, torch.Tensor) else p for p in pixels]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, p in enumerate(pixels):
            groups.setdefault(tuple(p.shape), []).append(i)
        dev = self.model_device(m)
        maps: list[DepthMap | None] = [None] * len(images)
        for idx in groups.values():
            batch = torch.stack([pixels[i] for i in idx]).to(dev, m.dtype)
            with torch.inference_mode():
                raw = m.model(pixel_values=batch).predicted_depth.float()
            sizes = [(images[i].height, images[i].width) for i in idx]
            for i, (h, w), depth in zip(idx, sizes, upsample(m.processor, raw, sizes)):
                maps[i] = DepthMap(depth.reshape(h, w), convention=convention, unit=unit)
        return maps  # type: ignore[return-value]


def upsample(processor: Any, predicted_depth, sizes: list[tuple[int, int]]) -> list:
    """Each raw map resized to its (height, width): the processor's own post-processing when it has one,
    else the same bicubic interpolation (``align_corners=False``) that DPT's processor applies."""
    import torch
    from transformers.modeling_outputs import DepthEstimatorOutput

    post = getattr(processor, "post_process_depth_estimation", None)
    if post is not None:
        extra = {}
        if "source_sizes" in inspect.signature(post).parameters:
            extra["source_sizes"] = sizes  # ZoeDepth's processor pads the input; this strips the padding again
        out = post(DepthEstimatorOutput(predicted_depth=predicted_depth), target_sizes=sizes, **extra)
        return [r["predicted_depth"].float().cpu().numpy() for r in out]
    return [torch.nn.functional.interpolate(d[None, None], size=s, mode="bicubic", align_corners=False)[0, 0]
            .cpu().numpy() for d, s in zip(predicted_depth, sizes)]


class DptBackend(HfDepthBackend):
    """DPT (Intel/dpt-large, dpt-hybrid-midas, ...): relative inverse depth unless ``convention`` says
    otherwise; also ZoeDepth (Intel/zoedepth-nyu-kitti), DPT's metric descendant, in metres."""

    name = "dpt"
    settings_name = "dpt"
    family = "DPT (monocular depth)"
    weights_example = "Intel/dpt-hybrid-midas"
    model_types = ("dpt", "zoedepth")


class DepthAnythingBackend(HfDepthBackend):
    """Depth-Anything (v1/v2): relative inverse depth, or metres for the metric checkpoints."""

    name = "depth_anything"
    settings_name = "depth_anything"
    family = "Depth-Anything"
    weights_example = "depth-anything/Depth-Anything-V2-Small-hf"
    model_types = ("depth_anything",)


def backends() -> list[Backend]:
    return [DptBackend(), DepthAnythingBackend()]
