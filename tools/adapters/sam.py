"""``segment`` by Segment Anything (SAM, ``pip install segment-anything``) over a checkpoint the user brings.

Settings (``[backends.sam]`` in vistrace.toml, or ``VISTRACE_SAM_<KEY>``):

- ``checkpoint``: a local ``.pth`` file (e.g. Meta's ``sam_vit_b_01ec64.pth``); required, never downloaded.
- ``model_type``: ``vit_b``, ``vit_l`` or ``vit_h``. Optional: by default it is INFERRED from the
  checkpoint's tensor shapes, which we read anyway to load it (the patch embedding's width is 768,
  1024 or 1280 and the encoder has 12, 24 or 32 blocks, per segment_anything's ``build_sam.py``).
  A checkpoint of another shape is a clear error, never a silent guess.
- ``device``: e.g. ``cpu`` or ``cuda:0`` (default: ``$VISTRACE_DEVICE``, else CUDA when present).
- ``multimask``: whether SAM proposes three masks (we keep the one with the highest predicted IoU).
  By default only for a lone point, the ambiguous prompt the SAM authors recommend it for.

Loading does what the library's ``sam_model_registry[type](checkpoint=path)`` does (build the
architecture, ``load_state_dict``), but reads the file with ``map_location="cpu"`` (the library's
plain ``torch.load`` fails on CPU-only machines for checkpoints saved from CUDA tensors) and
``weights_only=True``; the same read gives the shapes the model type is inferred from.

Prompts arrive in the given image's own pixels and go to ``SamPredictor.predict`` as SAM expects:
a box as ``[x1, y1, x2, y2]``, a point as a foreground click (label 1), a rough mask as SAM's
1x256x256 low-resolution logits (see :func:`mask_to_low_res_logits`). The image embedding
(``set_image``, by far the expensive step) is kept per (image pixels sha256, weights) in a small
per-backend cache, so several prompts on one image embed it once.

No ``run_batch``: SAM's cost is the per-image embedding, and prompts on one image already share it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from vistrace.errors import BackendUnavailable, ToolArgumentError
from vistrace.settings import env_name
from vistrace.values import Box, Image, Mask

from ..backends import Availability, Backend
from ..model_cache import MODELS
from .base import AdapterBackend, torch_bytes, weights_fingerprint

MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
# (patch-embedding width, encoder depth) of each registry architecture (segment_anything/build_sam.py)
ARCHITECTURES = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
PATCH_KEY = "image_encoder.patch_embed.proj.weight"
BLOCK_PREFIX = "image_encoder.blocks."

# Rough-mask prompts become logits of this magnitude (positive inside). SAM's own low-res logits for
# confident pixels lie around +/-10..20 (e.g. the values posted in facebookresearch/segment-anything#169).
MASK_LOGIT = 10.0
EMBEDDING_CACHE_SIZE = 4   # image embeddings kept per backend (vit_*: 1x256x64x64 float32 = 4 MiB each)

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def architecture_of(state: dict[str, Any]) -> tuple[str | None, str]:
    """The registry model type whose shapes a state dict has (or None), and the shapes in words."""
    weight = state.get(PATCH_KEY)
    if weight is None or not hasattr(weight, "shape") or len(weight.shape) != 4:
        some = ", ".join(list(state)[:3]) or "none"
        return None, f"no SAM image encoder in it ({PATCH_KEY!r} missing; first keys: {some})"
    width = int(weight.shape[0])
    blocks = {k[len(BLOCK_PREFIX):].split(".", 1)[0] for k in state if k.startswith(BLOCK_PREFIX)}
    depth = 1 + max((int(b) for b in blocks if b.isdigit()), default=-1)
    return ARCHITECTURES.get((width, depth)), f"image encoder width {width}, {depth} blocks"


def mask_to_low_res_logits(mask, img_size: int = 1024, low_res: tuple[int, int] = (256, 256)):
    """A boolean HxW mask as SAM's ``mask_input``: 1 x low_res logits in SAM's padded input frame.

    SAM resizes the image so its longest side is ``img_size`` (``ResizeLongestSide``), pads the
    bottom and right to a square (``Sam.preprocess``) and predicts masks at 1/4 of that square
    (``postprocess_masks`` undoes exactly this). We follow the same geometry backwards: resize the
    mask to the resized-image size, pad with background, average each low-res cell, and map the
    covered fraction f to ``MASK_LOGIT * (2f - 1)`` (SAM thresholds logits at 0).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F
    from segment_anything.utils.transforms import ResizeLongestSide

    arr = np.asarray(mask, dtype=np.float32)
    h, w = arr.shape
    new_h, new_w = ResizeLongestSide.get_preprocess_shape(h, w, img_size)
    t = torch.from_numpy(arr)[None, None]
    t = F.interpolate(t, (new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    t = F.pad(t, (0, img_size - new_w, 0, img_size - new_h))
    frac = F.adaptive_avg_pool2d(t, tuple(low_res)).clamp(0.0, 1.0)
    return ((2.0 * frac - 1.0) * MASK_LOGIT)[0].numpy()


def parse_flag(value: Any) -> bool | None:
    """A boolean setting from TOML (bool) or the environment (a word); None when it is neither."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


class SamBackend(AdapterBackend):
    """Segment Anything: one object's mask from a box, a point and/or a rough mask."""

    tool = "segment"
    name = "sam"
    settings_name = "sam"
    extra = "sam"
    requires = ("segment_anything", "torch", "torchvision")
    weights_key = "checkpoint"
    weights_kind = "file"
    weights_example = "/models/sam_vit_b_01ec64.pth"
    family = "segment-anything (SAM)"
    priority = 30

    def __init__(self) -> None:
        self._lock = threading.Lock()   # the predictor holds one image's state at a time
        self._embeddings: OrderedDict[tuple[str, str], tuple[Any, tuple[int, int], tuple[int, int]]] = OrderedDict()
        self.embeddings_computed = 0    # how many times set_image ran (the expensive step)

    # settings ----------------------------------------------------------------------------
    def model_type_setting(self) -> str | None:
        value = self.settings().get("model_type")
        return str(value).strip().lower() if value not in (None, "") else None

    def multimask_setting(self) -> bool | None:
        value = self.settings().get("multimask")
        return None if value in (None, "") else parse_flag(value)

    def _settings_problem(self) -> tuple[str, str] | None:
        """A bad optional setting: (what is wrong, how to fix it), or None."""
        table = self.settings_name
        mt = self.model_type_setting()
        if mt is not None and mt not in MODEL_TYPES:
            return (f"{self.name}: model_type {mt!r} (from {self.settings().where('model_type')}) is not one of "
                    f"{', '.join(MODEL_TYPES)}",
                    f"set model_type to one of {', '.join(MODEL_TYPES)} under [backends.{table}] or "
                    f"{env_name(table, 'model_type')}, or leave it unset to infer it from the checkpoint")
        raw = self.settings().get("multimask")
        if raw not in (None, "") and parse_flag(raw) is None:
            return (f"{self.name}: multimask {raw!r} (from {self.settings().where('multimask')}) is not a boolean",
                    f"set {env_name(table, 'multimask')} to true or false, or leave it unset")
        return None

    def availability(self) -> Availability:
        avail = super().availability()
        if not avail.ok:
            return avail
        problem = self._settings_problem()
        return Availability(False, *problem) if problem else avail

    @property
    def version(self) -> str:  # type: ignore[override]
        base = super().version
        mm = self.multimask_setting()
        return base if mm is None else f"{base}+multimask={'on' if mm else 'off'}"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        given = [k for k in ("box", "point", "mask") if args.get(k) is not None]
        return True, f"sam segments from any prompt (given: {', '.join(given) or 'none'})"

    # loading -----------------------------------------------------------------------------
    def _model_key(self) -> tuple[Path, str, str]:
        path = self.resolve_weights()
        dev = self.device()
        key = f"{self.name}:{path}:{weights_fingerprint(path)}:{dev}:{self.model_type_setting() or 'auto'}"
        return path, dev, key

    def loaded(self) -> Any:
        """The SamPredictor, once per (weights, device, model_type setting) in the process-wide model cache."""
        return self._loaded_with_key()[0]

    def _loaded_with_key(self) -> tuple[Any, str]:
        problem = self._settings_problem()
        if problem:
            raise BackendUnavailable(problem[0], fix=problem[1])
        path, dev, key = self._model_key()
        return MODELS.get(key, lambda: self.load(path, dev), torch_bytes), key

    def _read_state(self, path: Path) -> dict[str, Any]:
        import pickle
        import zipfile

        import torch

        fix = f"point it at a segment-anything .pth checkpoint: {self.setting_hint()}"
        try:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                state = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as exc:
            text = str(exc)
            if isinstance(exc, pickle.UnpicklingError):  # torch's long weights_only advice; keep its detail only
                detail = " ".join(text.split("WeightsUnpickler error:")[-1].split("Check the documentation")[0].split())
                why = ("it is not a file of plain tensors (read with weights_only=True, which runs no pickled code)"
                       + (f": {detail}" if detail and detail != " ".join(text.split()) else ""))
            elif isinstance(exc, EOFError):
                why = "the file is empty or cut short"
            else:
                why = text.splitlines()[0] if text else type(exc).__name__
            raise BackendUnavailable(f"{self.name}: cannot read the checkpoint {path} as a PyTorch state dict: {why}",
                                     fix=fix) from None
        if not isinstance(state, dict):
            raise BackendUnavailable(f"{self.name}: the checkpoint {path} holds a {type(state).__name__}, "
                                     "not a state dict", fix=fix)
        return state

    def load(self, path: Path, device: str) -> Any:
        import torch
        from segment_anything import SamPredictor, sam_model_registry

        table = self.settings_name
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(f"{self.name}: device {device!r} (from {self.settings().where('device')}) "
                                     "asks for CUDA, but torch sees no CUDA device here",
                                     fix=f"set {env_name(table, 'device')}=cpu, or install a CUDA build of torch")
        state = self._read_state(path)
        found, shapes = architecture_of(state)
        wanted = self.model_type_setting()
        fix_type = (f"set model_type to the checkpoint's type under [backends.{table}] or "
                    f"{env_name(table, 'model_type')}, or unset it to infer it")
        if wanted is None and found is None:
            raise BackendUnavailable(f"{self.name}: cannot tell the SAM model type of {path}: {shapes}; "
                                     f"segment-anything builds only {', '.join(MODEL_TYPES)}",
                                     fix=f"point {env_name(table, 'checkpoint')} at an original SAM checkpoint, "
                                         f"or set {env_name(table, 'model_type')}")
        if wanted is not None and found is not None and found != wanted:
            raise BackendUnavailable(f"{self.name}: model_type {wanted!r} does not fit the checkpoint {path}, "
                                     f"which is a {found} ({shapes})", fix=fix_type)
        model_type = wanted or found
        sam = sam_model_registry[model_type](checkpoint=None)
        try:
            sam.load_state_dict(state)
        except RuntimeError as exc:
            first = " ".join(str(exc).split())[:300]
            raise BackendUnavailable(f"{self.name}: the checkpoint {path} does not fit SAM model_type "
                                     f"{model_type!r} ({shapes}): {first}", fix=fix_type) from None
        del state
        sam.to(device).eval()
        return SamPredictor(sam)

    # running -----------------------------------------------------------------------------
    def _use_image(self, predictor: Any, image: Image, model_key: str) -> None:
        """Give the predictor this image's embedding: from the cache, else by ``set_image`` (then cached)."""
        import numpy as np

        key = (image.sha256, model_key)
        entry = self._embeddings.get(key)
        if entry is None:
            predictor.set_image(np.ascontiguousarray(image.pil.convert("RGB")), image_format="RGB")
            self.embeddings_computed += 1
            entry = (predictor.features, tuple(predictor.original_size), tuple(predictor.input_size))
            self._embeddings[key] = entry
            while len(self._embeddings) > EMBEDDING_CACHE_SIZE:
                self._embeddings.popitem(last=False)
        else:
            self._embeddings.move_to_end(key)
            predictor.reset_image()
            predictor.features, predictor.original_size, predictor.input_size = entry
            predictor.is_image_set = True

    def cached_embeddings(self) -> list[tuple[str, str]]:
        """The (image sha256, weights key) pairs whose embeddings are kept, oldest first."""
        return list(self._embeddings)

    def run(self, image: Image, box: Box | None = None, point: tuple[float, float] | None = None,
            mask: Mask | None = None) -> Mask:
        import numpy as np

        if box is None and point is None and mask is None:
            raise ToolArgumentError("sam needs a prompt: a box, a point or a mask")
        predictor, model_key = self._loaded_with_key()
        prompts: dict[str, Any] = {}
        if box is not None:
            prompts["box"] = np.array([box.x1, box.y1, box.x2, box.y2], dtype=np.float32)
        if point is not None:
            prompts["point_coords"] = np.array([[float(point[0]), float(point[1])]], dtype=np.float32)
            prompts["point_labels"] = np.array([1], dtype=np.int64)  # 1 = foreground click
        if mask is not None:
            model = predictor.model
            prompts["mask_input"] = mask_to_low_res_logits(mask.array, model.image_encoder.img_size,
                                                           model.prompt_encoder.mask_input_size)
        multimask = self.multimask_setting()
        if multimask is None:
            multimask = box is None and mask is None  # a lone point is ambiguous: let SAM propose three
        with self._lock:
            self._use_image(predictor, image, model_key)
            masks, scores, _ = predictor.predict(multimask_output=multimask, **prompts)
        best = int(np.argmax(scores))
        label = (box.label if box is not None else "") or (mask.label if mask is not None else "") or "object"
        return Mask(np.asarray(masks[best], dtype=bool), label=label, score=float(scores[best]))


def backends() -> list[Backend]:
    return [SamBackend()]
