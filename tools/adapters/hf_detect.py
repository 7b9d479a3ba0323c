"""``detect`` by open-vocabulary detectors you bring as Hugging Face transformers models.

Two backends, each over a ``save_pretrained`` folder or a model id already in your Hugging Face cache
(loaded with ``local_files_only=True``; nothing is downloaded):

- ``owlv2``: OWLv2 (Minderer et al., "Scaling Open-Vocabulary Object Detection", 2023), and OWL-ViT v1
  checkpoints (``model_type`` ``owlvit``), through ``AutoProcessor`` + ``AutoModelForZeroShotObjectDetection``.
  Each label becomes one text query through ``prompt`` (default ``"a photo of a {label}"``, the query form
  of the OWLv2/OWL-ViT usage example in transformers' ``Owlv2ForObjectDetection.forward`` docstring; set
  ``prompt = "{label}"`` for bare names). Every image patch predicts one box, labelled with its best
  query (the processor's ``post_process_object_detection``). Default floor ``score_threshold = 0.1``,
  the threshold of that same example and the post-processor's default.

  Coordinates: the OWLv2 image processor pads the image at the bottom/right to a square of side
  ``max(h, w)`` and then resizes it, so the predicted boxes are fractions of that padded square. We
  pass ``target_sizes = (S, S)`` with ``S = max(h, w)`` and clip to the image; boxes lying wholly in
  the padding are dropped. (transformers 5.24's ``_scale_boxes`` for OWLv2 itself scales both axes by
  the larger of the sizes it is given; ``(S, S)`` is also right for a post-processor that scales by
  ``(h, w)`` as given.) The processor's ``do_pad`` says whether it pads: OWL-ViT v1 checkpoints resize
  to the square without padding and get ``(h, w)``.

- ``grounding_dino``: Grounding DINO (Liu et al., 2023; ``model_type`` ``grounding-dino`` or
  ``mm-grounding-dino``). The labels form one prompt, lower-case, each ending with a period
  (``"cat. red car."``, as the model cards and IDEA's ``preprocess_caption`` require). The box score
  is the best sigmoid over the prompt's tokens (IDEA's ``predict``: ``logits.max(dim=1)``), kept at
  ``box_threshold``; a box's phrase is its tokens above ``text_threshold`` (defaults 0.35 / 0.25, the
  values of IDEA-Research/GroundingDINO's README example). The processor's
  ``post_process_grounded_object_detection`` decodes that phrase as a string; we map the same tokens by
  their *positions* to the query label they belong to (the label holding the phrase's strongest
  token), so a sub-span ("car" of "red car"), a repeated word or a stray ``[SEP]`` can't mislabel a
  box; boxes whose phrase lies in no label are dropped. A caller's threshold lower than
  ``text_threshold`` lowers it too, so the floor asked for is the floor applied.

  Batching: images of one size share a forward pass. Images of different sizes run in one pass per
  size, because padding a smaller image to the batch's size changes the Swin features of the padded
  image (measured on the random test model: boxes moved by up to 0.8 of the image) and a result must
  not depend on which other images were in the batch. OWLv2 resizes every image to one square, so
  any batch is one pass.

Both: labels in the Detections are the query labels; scores are 0..1; boxes are in the given image's
own pixels; the post-processor gets a zero threshold and we filter after (``>=`` the floor, which is the
tool's threshold when it is > 0, else the backend's default). Settings (``[backends.owlv2]`` /
``[backends.grounding_dino]`` or ``VISTRACE_OWLV2_<KEY>`` / ``VISTRACE_GROUNDING_DINO_<KEY>``):
``model`` (required), ``device``, ``dtype`` (``float32`` default; ``float16``/``bfloat16``; ``auto`` =
float16 on CUDA, float32 elsewhere), and the thresholds/prompt above.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from vistrace.errors import BackendUnavailable, ToolArgumentError, ToolError
from vistrace.settings import env_name
from vistrace.values import Box, Detections, Image

from ..backends import Backend
from ..model_cache import MODELS
from .base import AdapterBackend, torch_bytes, weights_fingerprint

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}


class LoadedDetector:
    """A loaded model with its processor and the facts ``run_batch`` needs (held in the model cache)."""

    def __init__(self, model: Any, processor: Any, device: str, dtype: Any, model_type: str):
        self.model = model
        self.processor = processor
        self.device = device
        self.dtype = dtype
        self.model_type = model_type


def rgb(image: Image):
    pil = image.pil
    return pil if pil.mode == "RGB" else pil.convert("RGB")


def unique(labels: list[str]) -> list[str]:
    return list(dict.fromkeys(labels))


class HFDetectBackend(AdapterBackend):
    """What the two transformers detectors share: settings, loading, dtype, thresholds, identity."""

    tool = "detect"
    extra = "hf"
    requires = ("transformers", "torch")
    weights_key = "model"
    weights_kind = "hf"
    model_types: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}     # result-affecting settings and their defaults
    floor_key: ClassVar[str] = ""               # the setting that is the floor when the tool's threshold is 0

    # settings ----------------------------------------------------------------------------
    def hint(self, key: str, example: Any) -> str:
        """How to set a (non-weights) key: the vistrace.toml line and the environment variable."""
        shown = f'"{example}"' if isinstance(example, str) else example
        return (f"set `{key} = {shown}` under [backends.{self.settings_name}] in vistrace.toml, "
                f"or {env_name(self.settings_name, key)}={example}")

    def number(self, key: str) -> float:
        value = self.settings().get(key, self.defaults[key])
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if not 0.0 <= number <= 1.0:
            raise BackendUnavailable(f"{self.name}: setting '{key}' must be a number in 0..1, got {value!r} "
                                     f"(from {self.settings().where(key)})", fix=self.hint(key, self.defaults[key]))
        return number

    def dtype_name(self, device: str) -> str:
        raw = str(self.settings().get("dtype") or "float32").strip().lower()
        if raw == "auto":
            return "float16" if device.startswith("cuda") else "float32"
        if raw not in DTYPES:
            raise BackendUnavailable(f"{self.name}: setting 'dtype' must be one of auto, float32, float16, bfloat16; "
                                     f"got {raw!r} (from {self.settings().where('dtype')})",
                                     fix=self.hint("dtype", "float16"))
        return DTYPES[raw]

    def floor(self, threshold: float) -> float:
        """The lowest score kept: the tool's threshold when > 0, else this backend's default setting."""
        return float(threshold) if threshold and threshold > 0 else self.number(self.floor_key)

    # identity: settings that change the answer are part of the version the result cache keys on
    @property
    def version(self) -> str:  # type: ignore[override]
        base = super().version
        values = self.settings().values
        changed = [f"{k}={values[k]}" for k in (*self.defaults, "dtype")
                   if values.get(k) not in (None, "") and str(values[k]) != str(self.defaults.get(k, "float32"))]
        return f"{base} ({', '.join(changed)})" if changed and base != "unconfigured" else base

    # loading -----------------------------------------------------------------------------
    def loaded(self) -> LoadedDetector:
        """The loaded model, once per (weights, device, dtype) in the process-wide LRU cache."""
        path = self.resolve_weights()
        dev = self.device()
        key = f"{self.name}:{path}:{weights_fingerprint(path)}:{dev}:{self.dtype_name(dev)}"
        return MODELS.get(key, lambda: self.load(path, dev), torch_bytes)

    def load(self, path: Path, device: str) -> LoadedDetector:
        import torch
        from transformers import AutoConfig, AutoModelForZeroShotObjectDetection, AutoProcessor

        where = f"(setting '{self.weights_key}' from {self.settings().where(self.weights_key)})"
        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise BackendUnavailable(f"{self.name}: {path} holds no loadable transformers model config {where}: {exc}",
                                     fix=f"point it at a save_pretrained folder of a {self.family} model; "
                                         f"{self.setting_hint()}") from exc
        if config.model_type not in self.model_types:
            raise BackendUnavailable(f"{self.name}: {path} is a '{config.model_type}' model, not one of "
                                     f"{', '.join(self.model_types)} {where}", fix=self.setting_hint())
        try:
            processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            model = AutoModelForZeroShotObjectDetection.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BackendUnavailable(f"{self.name}: could not load the model or processor from {path} {where}: {exc}",
                                     fix=f"copy the complete model folder (weights, config, processor and tokenizer "
                                         f"files) there, or {self.setting_hint()}") from exc
        dtype = getattr(torch, self.dtype_name(device))
        try:
            model = model.to(device=device, dtype=dtype).eval()
        except (RuntimeError, AssertionError) as exc:  # e.g. a CUDA device on a machine without one
            raise BackendUnavailable(f"{self.name}: cannot put the model on device '{device}': {exc}",
                                     fix=self.hint("device", "cpu")) from exc
        self.check_processor(processor)
        return LoadedDetector(model, processor, device, dtype, config.model_type)

    def check_processor(self, processor: Any) -> None:
        """Refuse processor settings whose boxes could not be mapped back to the image."""

    def to_device(self, inputs: Any, loaded: LoadedDetector) -> dict[str, Any]:
        out = {}
        for k, v in inputs.items():
            v = v.to(loaded.device)
            out[k] = v.to(loaded.dtype) if v.is_floating_point() else v
        return out

    # running -----------------------------------------------------------------------------
    def run(self, image: Image, labels: list[str], threshold: float = 0.0, **_: Any) -> Detections:
        return self.run_batch([image], labels=labels, threshold=threshold)[0]

    def run_batch(self, images: list[Image], labels: list[str], threshold: float = 0.0, **_: Any) -> list[Detections]:
        labels = unique([str(q).strip() for q in labels if str(q).strip()])
        if not labels:
            raise ToolArgumentError(f"{self.name}: detect needs at least one object name")
        if not images:
            return []
        loaded = self.loaded()
        floor = self.floor(threshold)
        found = self.detect_boxes(loaded, images, labels, floor)
        return [Detections([b for b in boxes if b.score >= floor], query=",".join(labels), image_size=im.size)
                for im, boxes in zip(images, found)]

    @abstractmethod
    def detect_boxes(self, loaded: LoadedDetector, images: list[Image], labels: list[str],
                     floor: float) -> list[list[Box]]:
        """Boxes per image (in the image's own pixels, labelled with query labels, scores 0..1)."""


def clipped(xyxy: list[float], w: int, h: int, label: str, score: float) -> Box | None:
    """The box clipped to the image, or None when nothing of it is inside (e.g. wholly in OWLv2's padding)."""
    x1, y1, x2, y2 = (min(max(v, 0.0), lim) for v, lim in zip(xyxy, (w, h, w, h)))
    if not (x2 > x1 and y2 > y1):
        return None
    return Box(x1, y1, x2, y2, label=label, score=min(max(score, 0.0), 1.0))


class Owlv2Backend(HFDetectBackend):
    """Open-vocabulary detection by OWLv2 (or OWL-ViT v1) weights you bring."""

    name = "owlv2"
    settings_name = "owlv2"
    family = "OWLv2 (open-vocabulary detection)"
    weights_example = "google/owlv2-base-patch16-ensemble"
    priority = 25
    model_types = ("owlv2", "owlvit")
    defaults = {"prompt": "a photo of a {label}", "score_threshold": 0.1}
    floor_key = "score_threshold"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, ("owlv2: open-vocabulary, any object words; ranks below a configured YOLO (30), whose "
                      "trained COCO-80 classes are more precise for those words (YOLO declines other words), "
                      "and below Grounding DINO (26), stronger zero-shot on COCO")

    def prompt(self) -> str:
        template = str(self.settings().get("prompt") or self.defaults["prompt"])
        if "{label}" not in template:
            raise BackendUnavailable(f"owlv2: setting 'prompt' must contain {{label}}, got {template!r} "
                                     f"(from {self.settings().where('prompt')})",
                                     fix=self.hint("prompt", self.defaults["prompt"]) + " ('{label}' for bare names)")
        return template

    def check_processor(self, processor: Any) -> None:
        ip = processor.image_processor
        crop, size = getattr(ip, "crop_size", None), getattr(ip, "size", None)
        if getattr(ip, "do_center_crop", False) and crop is not None and size is not None and (
                (crop.get("height"), crop.get("width")) != (size.get("height"), size.get("width"))):
            raise BackendUnavailable("owlv2: the model's image processor centre-crops (do_center_crop with a crop "
                                     "size other than its resize size), so boxes outside the crop cannot be found",
                                     fix="set \"do_center_crop\": false in the model folder's preprocessor_config.json")

    @staticmethod
    def pads_to_square(loaded: LoadedDetector) -> bool:
        return bool(getattr(loaded.processor.image_processor, "do_pad", False))

    def detect_boxes(self, loaded, images, labels, floor):
        import torch

        template = self.prompt()
        queries = [template.format(label=q) for q in labels]
        pils = [rgb(im) for im in images]
        inputs = loaded.processor(text=[queries] * len(pils), images=pils, return_tensors="pt", truncation=True)
        with torch.inference_mode():
            out = loaded.model(**self.to_device(inputs, loaded))
        out.logits = out.logits.float().cpu()
        out.pred_boxes = out.pred_boxes.float().cpu()
        pad = self.pads_to_square(loaded)
        sizes = [(max(p.size),) * 2 if pad else (p.height, p.width) for p in pils]
        results = loaded.processor.post_process_grounded_object_detection(out, threshold=0.0, target_sizes=sizes)
        found = []
        for pil, res in zip(pils, results):
            boxes = []
            for xyxy, score, idx in zip(res["boxes"].tolist(), res["scores"].tolist(), res["labels"].tolist()):
                if score >= floor and 0 <= idx < len(labels):
                    box = clipped(xyxy, pil.width, pil.height, labels[idx], score)
                    if box is not None:
                        boxes.append(box)
            found.append(boxes)
        return found


def prompt_text(label: str) -> str:
    """A label as Grounding DINO reads it: lower-case, single spaces, no periods (they separate labels)."""
    return re.sub(r"\s+", " ", label.lower().replace(".", " ")).strip()


class GroundingDinoBackend(HFDetectBackend):
    """Open-vocabulary (phrase-grounded) detection by Grounding DINO weights you bring."""

    name = "grounding_dino"
    settings_name = "grounding_dino"
    family = "Grounding DINO"
    weights_example = "IDEA-Research/grounding-dino-tiny"
    priority = 26
    model_types = ("grounding-dino", "mm-grounding-dino")
    defaults = {"box_threshold": 0.35, "text_threshold": 0.25}
    floor_key = "box_threshold"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        # Liu et al., arXiv:2303.05499, abstract: 52.5 AP on COCO zero-shot transfer (no COCO training data)
        return True, ("grounding_dino: open-vocabulary, any object words or short phrases; ranks below a "
                      "configured YOLO (30), whose trained COCO-80 classes are more precise for those words (YOLO "
                      "declines other words), and above OWLv2 (25): up to 52.5 zero-shot COCO AP in its paper")

    def prompt(self, labels: list[str], tokenizer: Any) -> tuple[str, list[int], list[list[int]]]:
        """The prompt ``"a. b."``, its token ids and, per label, the positions of its tokens among them."""
        texts = [prompt_text(q) for q in labels]
        empty = [q for q, t in zip(labels, texts) if not t]
        if empty:
            raise ToolArgumentError(f"grounding_dino: label(s) {', '.join(map(repr, empty))} have no words once "
                                    "periods (the prompt's label separator) are removed")
        spans, pos = [], 0
        for t in texts:
            spans.append((pos, pos + len(t)))
            pos += len(t) + 2  # ". "
        prompt = ". ".join(texts) + "."
        try:
            enc = tokenizer(prompt, return_offsets_mapping=True, return_special_tokens_mask=True)
            ids, offsets, special = enc["input_ids"], enc["offset_mapping"], enc["special_tokens_mask"]
            positions = [[i for i, ((a, b), s) in enumerate(zip(offsets, special)) if not s and b > a and lo <= a < hi]
                         for lo, hi in spans]
        except (NotImplementedError, KeyError, TypeError, ValueError):  # a tokenizer without offsets
            ids = tokenizer(prompt)["input_ids"]
            positions, at = [], 0
            for t in texts:
                piece = tokenizer(t, add_special_tokens=False)["input_ids"]
                start = next((i for i in range(at, len(ids) - len(piece) + 1) if ids[i:i + len(piece)] == piece), None)
                positions.append([] if start is None else list(range(start, start + len(piece))))
                at = at if start is None else start + len(piece)
        return prompt, list(ids), positions

    @staticmethod
    def label_of(probs: list[float], positions: list[list[int]], labels: list[str], text_threshold: float) -> str | None:
        """The query label whose tokens hold the phrase's strongest token (tokens > text_threshold), or None."""
        best, best_p = None, text_threshold
        for label, pos in zip(labels, positions):
            p = max((probs[i] for i in pos if i < len(probs)), default=0.0)
            if p > best_p:
                best, best_p = label, p
        return best

    def detect_boxes(self, loaded, images, labels, floor):
        import torch

        text_threshold = min(self.number("text_threshold"), floor)
        prompt, prompt_ids, positions = self.prompt(labels, loaded.processor.tokenizer)
        limit = int(getattr(loaded.model.config, "max_text_len", 256))
        pils = [rgb(im) for im in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, p in enumerate(pils):
            groups.setdefault(p.size, []).append(i)
        found: list[list[Box]] = [[] for _ in pils]
        for (w, h), idxs in groups.items():
            inputs = loaded.processor(images=[pils[i] for i in idxs], text=[prompt] * len(idxs), return_tensors="pt")
            n_tokens = int(inputs["input_ids"].shape[1])
            if n_tokens > limit:
                raise ToolArgumentError(f"grounding_dino: the prompt for {len(labels)} labels is {n_tokens} tokens, "
                                        f"over the model's {limit}; ask for fewer labels per detect call")
            if inputs["input_ids"][0].tolist() != prompt_ids or not all(positions):
                raise ToolError(f"grounding_dino: could not place every label in the tokenized prompt {prompt!r}")
            with torch.inference_mode():
                out = loaded.model(**self.to_device(inputs, loaded))
            out.logits = out.logits.float().cpu()
            out.pred_boxes = out.pred_boxes.float().cpu()
            input_ids = inputs["input_ids"].cpu()
            results = loaded.processor.post_process_grounded_object_detection(
                out, input_ids, threshold=0.0, text_threshold=text_threshold, target_sizes=[(h, w)] * len(idxs))
            probs = out.logits.sigmoid()
            for k, (i, res) in enumerate(zip(idxs, results)):
                rows = probs[k][probs[k].max(dim=-1).values > 0.0]  # the rows the post-processor kept, in order
                for row, xyxy, score in zip(rows.tolist(), res["boxes"].tolist(), res["scores"].tolist()):
                    if score < floor:
                        continue
                    label = self.label_of(row, positions, labels, text_threshold)
                    box = clipped(xyxy, w, h, label, score) if label is not None else None
                    if box is not None:
                        found[i].append(box)
        return found


def backends() -> list[Backend]:
    return [GroundingDinoBackend(), Owlv2Backend()]
