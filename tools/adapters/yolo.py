"""``detect`` and ``segment`` by the user's ultralytics YOLO checkpoints (YOLO11, YOLOv8, YOLO-World, YOLOE).

Settings (``[backends.yolo]`` for detection, ``[backends.yolo_seg]`` for segmentation; or the
environment variables ``VISTRACE_YOLO_<KEY>`` / ``VISTRACE_YOLO_SEG_<KEY>``):

- ``weights``  a local ultralytics ``.pt`` checkpoint (required), e.g. ``/models/yolo11n.pt``
- ``device``   ``cpu``, ``cuda``, ``cuda:1`` (default: ``VISTRACE_DEVICE``, else CUDA when present)
- ``dtype``    ``float32`` (default) or ``float16`` (half precision, on CUDA only; ``quantize=16`` in 8.4)
- ``imgsz``    the inference size, default 640 (ultralytics' own default)
- ``conf``     the library's confidence floor when the caller gives no threshold (default 0.25, as
               ultralytics predicts); for ``segment`` the floor of the instances it chooses from
- ``iou``, ``max_det``  NMS IoU (default 0.7) and the most detections kept (default 300), as ultralytics
- ``text_model``  open-vocabulary checkpoints only: the local text-encoder file (``mobileclip_blt.ts``,
               ``mobileclip2_b.ts`` or CLIP ``ViT-B-32.pt``); default: the file in ultralytics' weights_dir

Decisions, from reading ultralytics 8.4.190:

- Nothing is downloaded. Importing ``ultralytics.utils`` resolves two DNS names (``is_online``) unless
  ``YOLO_OFFLINE`` is set; checkpoint loading may ``pip install`` a module a pickle names
  (``check_requirements``, gated by ``YOLO_AUTOINSTALL`` and ``ONLINE``); analytics (``events``) and
  sentry are gated by ``ONLINE``; ``YOLO("…/yolov5s.pt")`` is renamed to ``yolov5su.pt`` and fetched from
  GitHub when that name is missing; ``set_classes`` builds CLIP/MobileCLIP text encoders by asset name
  (fetched when missing). So we set ``YOLO_OFFLINE=1`` and ``YOLO_AUTOINSTALL=false`` before the import,
  turn the same module flags off should ultralytics have been imported already, refuse checkpoint
  names ultralytics would redirect, and build text encoders only from a local file given by path. We
  never plot (``Results.plot`` is what fetches the Arial fonts) and never save.
- ``threshold`` goes to the library as ``conf``: greedy NMS never lets a lower-scored box suppress a
  higher one, so filtering at ``conf=threshold`` gives exactly the boxes that a lower ``conf``
  followed by our own filter would. ``threshold`` 0 means the ``conf`` setting (0.25).
- ``rect=False``: every image is letterboxed to the square ``imgsz``. Ultralytics' default (minimal
  padding) applies only when all images of a batch have one shape, so it would make an image's boxes
  depend on what it was batched with; square padding makes ``run_batch`` equal one-at-a-time.
- Segmentation predicts with ``retina_masks=True``: ultralytics then upsamples the prototypes to the
  original image (``ops.process_mask_native``, letterbox padding cropped), so ``masks.data`` is already
  the image's own H x W grid.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from vistrace.errors import BackendUnavailable, ToolError
from vistrace.values import Box, Detections, Image, Mask

from ..backends import Backend
from ..experts.centernet import SYNONYMS, coco_class
from ..vocabulary import fold, query_forms
from ..model_cache import MODELS
from .base import AdapterBackend, torch_bytes, weights_fingerprint

BOX_TASKS = ("detect", "segment", "pose")  # checkpoints whose Results carry axis-aligned boxes
DEFAULT_CONF = 0.25      # ultralytics' predict default
DEFAULT_IMGSZ = 640      # ultralytics' predict default
SHOWN_NAMES = 100        # how many class names a refusal lists
TEXT_MODEL_FILES = {"mobileclip": "mobileclip_blt.ts", "mobileclip2": "mobileclip2_b.ts", "clip": "clip/ViT-B-32.pt"}
_FLAGS_LOCK = threading.Lock()


@contextlib.contextmanager
def torch_threads_kept():
    """Undo ultralytics' process-wide ``torch.set_num_threads(cpu_count - 1)`` (its select_device on CPU),
    which would otherwise slow every other torch model in the process (1 thread on a 2-core machine)."""
    import torch

    before = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def ultralytics_offline() -> Any:
    """Import ultralytics with every network path off (see the module docstring); returns the package."""
    with _FLAGS_LOCK:
        os.environ["YOLO_OFFLINE"] = "1"          # read by ultralytics.utils.is_online() at import
        os.environ["YOLO_AUTOINSTALL"] = "false"  # read into ultralytics.utils.AUTOINSTALL at import
        had_omp = "OMP_NUM_THREADS" in os.environ
        import ultralytics

        if not had_omp:  # ultralytics sets OMP_NUM_THREADS=1 for training at import; not ours to change
            os.environ.pop("OMP_NUM_THREADS", None)
        from ultralytics import utils
        from ultralytics.utils import checks, events

        utils.ONLINE = checks.ONLINE = events.ONLINE = False  # in case it was imported before us
        utils.AUTOINSTALL = checks.AUTOINSTALL = False
        events.events.enabled = False
        # ultralytics replaces PIL.Image.open process-wide with a wrapper that, on a file PIL cannot read,
        # tries to pip-install a HEIF plugin and then raises ModuleNotFoundError instead of PIL's error.
        # Put PIL's own function back: unreadable images must stay InputErrors everywhere in vistrace.
        from PIL import Image as PILImage
        from ultralytics.utils import patches

        original = getattr(patches, "_image_open", None)
        if original is not None and PILImage.open is getattr(patches, "image_open", None):
            PILImage.open = original
    return ultralytics


def key(name: str) -> str:
    """A class name folded for matching: also without spaces ('potted plant' = 'pottedplant' = 'Potted_Plant')."""
    return fold(name).replace(" ", "")


def class_index(names: dict[int, str]) -> dict[str, int]:
    """Matching key -> class id; COCO/VOC spellings (``aeroplane``, ``tvmonitor``) also under their COCO name."""
    index: dict[str, int] = {}
    for i, n in names.items():
        index.setdefault(key(n), int(i))
    for i, n in names.items():
        coco = coco_class(n)
        if coco is not None:
            index.setdefault(key(coco), int(i))
    return index


def match_class(query: str, index: dict[str, int]) -> int | None:
    """The class id a query names: the class itself (case, articles, plurals folded), else a COCO synonym."""
    forms = query_forms(query)
    for f in forms:
        if key(f) in index:
            return index[key(f)]
    for f in forms:
        if f in SYNONYMS and key(SYNONYMS[f]) in index:
            return index[key(SYNONYMS[f])]
    coco = coco_class(query)
    return index.get(key(coco)) if coco is not None else None


class _Loaded:
    """A loaded ultralytics model with what we keep beside it (lock, last class set, predictor precision)."""

    def __init__(self, yolo: Any, path: Path):
        self.yolo = yolo
        self.net = yolo.model           # the torch module (what the model cache sizes)
        self.path = path
        self.lock = threading.Lock()    # one predictor per model: predictions run one at a time
        self.classes: tuple[str, ...] | None = None
        self.precision: Any = None
        self.text_model: Any = None

    @property
    def task(self) -> str:
        return str(self.yolo.task)

    @property
    def names(self) -> dict[int, str]:
        names = self.yolo.names
        return dict(names) if isinstance(names, dict) else dict(enumerate(names))

    @property
    def open_vocabulary(self) -> str | None:
        """'world' or 'yoloe' when the model takes any class names (``set_classes``), else None."""
        from ultralytics.nn.tasks import WorldModel, YOLOEModel

        if isinstance(self.net, WorldModel):
            return "world"
        if isinstance(self.net, YOLOEModel) and not hasattr(self.net.model[-1], "lrpc"):  # not prompt-free
            return "yoloe"
        return None


class _YoloBase(AdapterBackend):
    extra = "yolo"
    requires = ("ultralytics", "torch", "torchvision")
    weights_kind = "file"

    # settings ----------------------------------------------------------------------------
    def resolve_weights(self) -> Path:
        path = super().resolve_weights()
        if path.suffix.lower() != ".pt":
            raise BackendUnavailable(
                f"{self.name}: {path} is not an ultralytics PyTorch checkpoint (.pt); exported formats "
                "(ONNX, TensorRT, ...) are not supported here", fix=f"use the .pt file: {self.setting_hint()}")
        return path

    def _number(self, key: str, default: float, kind: type = float) -> Any:
        raw = self.settings().get(key)
        if raw in (None, ""):
            return default
        try:
            value = kind(float(raw)) if kind is int else kind(raw)
        except (TypeError, ValueError):
            value = None
        if value is None or value <= 0:
            raise BackendUnavailable(f"{self.name}: setting '{key}' must be a positive number, got {raw!r} "
                                     f"(from {self.settings().where(key)})", fix=self.setting_hint(key))
        return value

    def half(self) -> bool:
        dtype = str(self.settings().get("dtype") or "float32").strip().lower()
        if dtype not in ("float32", "fp32", "float16", "fp16", "half"):
            raise BackendUnavailable(f"{self.name}: setting 'dtype' must be float32 or float16, got {dtype!r} "
                                     f"(from {self.settings().where('dtype')})", fix=self.setting_hint("dtype"))
        return dtype in ("float16", "fp16", "half") and self.device().startswith("cuda")

    def predict_args(self, conf: float) -> dict[str, Any]:
        """The keyword arguments of every ``predict`` call (device, size, precision, NMS)."""
        args = {"conf": float(conf), "iou": self._number("iou", 0.7),
                "imgsz": self._number("imgsz", DEFAULT_IMGSZ, int), "max_det": self._number("max_det", 300, int),
                "device": self.device(), "rect": False, "verbose": False, "save": False}
        from ultralytics.cfg import DEFAULT_CFG_DICT

        half = self.half()
        if "quantize" in DEFAULT_CFG_DICT:  # ultralytics 8.4: 'half' is deprecated for quantize=16 (None = FP32)
            args["quantize"] = 16 if half else None
        else:
            args["half"] = half
        return args

    # loading -----------------------------------------------------------------------------
    def load(self, path: Path, device: str) -> _Loaded:
        ultralytics_offline()
        from ultralytics.utils.checks import check_yolov5u_filename

        if check_yolov5u_filename(str(path), verbose=False) != str(path):
            raise BackendUnavailable(
                f"{self.name}: ultralytics reads the file name {path.name} as a legacy YOLOv5 name and would fetch "
                f"'{Path(check_yolov5u_filename(str(path), verbose=False)).name}' instead; nothing is downloaded",
                fix="rename the checkpoint (YOLOv5u files are named like yolov5su.pt)")
        from ultralytics import YOLO

        try:
            yolo = YOLO(str(path))
        except Exception as exc:  # ultralytics raises TypeError/ModuleNotFoundError/RuntimeError for bad files
            raise BackendUnavailable(f"{self.name}: cannot load {path} as an ultralytics checkpoint: "
                                     f"{type(exc).__name__}: {exc}",
                                     fix=f"give a checkpoint saved by ultralytics (model.save): {self.setting_hint()}"
                                     ) from exc
        yolo.model.to(device)
        return _Loaded(yolo, path)

    def loaded(self) -> _Loaded:
        """As AdapterBackend.loaded, sized twice: ultralytics' predictor keeps its own fused deep copy."""
        path = self.resolve_weights()
        dev = self.device()
        key = f"{self.name}:{path}:{weights_fingerprint(path)}:{dev}"
        return MODELS.get(key, lambda: self.load(path, dev), lambda m: 2 * torch_bytes(m))

    def loaded_or_reason(self) -> tuple[_Loaded | None, str]:
        try:
            return self.loaded(), ""
        except BackendUnavailable as exc:
            return None, exc.message + (f" — fix: {exc.fix}" if exc.fix else "")

    def predict(self, state: _Loaded, images: list[Image], **args: Any) -> list[Any]:
        """One ``predict`` call for all images (ultralytics batches a list into one forward pass)."""
        pils = [im.pil if im.pil.mode == "RGB" else im.pil.convert("RGB") for im in images]
        precision = args.get("quantize", args.get("half"))
        if state.precision != precision:
            state.yolo.predictor = None  # precision is fixed when the predictor is set up
        state.precision = precision
        with torch_threads_kept():
            return state.yolo.predict(pils, **args)


class YoloDetectBackend(_YoloBase):
    """Objects by a YOLO checkpoint: its own classes, or any labels for YOLO-World / YOLOE."""

    tool = "detect"
    name = "yolo"
    settings_name = "yolo"
    weights_example = "/models/yolo11n.pt"
    family = "ultralytics YOLO"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        labels = args.get("labels")
        if labels is None:
            labels = [q.strip() for q in str(args.get("query", "")).split(",") if q.strip()]
        state, why = self.loaded_or_reason()
        if state is None:
            return False, why
        if state.task not in BOX_TASKS:
            return False, (f"{self.name}: {state.path.name} is a '{state.task}' checkpoint; "
                           f"detect needs one with boxes ({', '.join(BOX_TASKS)})")
        names = state.names
        index = class_index(names)
        ids = {q: match_class(q, index) for q in labels}
        unknown = [q for q, i in ids.items() if i is None]
        if not unknown:
            mapped = ", ".join(q if key(names[i]) == key(q) else f"{q}->{names[i]}" for q, i in ids.items())
            return True, f"{self.name} ({state.path.name}) detects its {len(names)} classes ({mapped})"
        kind = state.open_vocabulary
        if kind:
            try:
                self.text_model_file(state)
            except BackendUnavailable as exc:
                return False, exc.message + (f" — fix: {exc.fix}" if exc.fix else "")
            return True, f"{self.name}: open-vocabulary {'YOLO-World' if kind == 'world' else 'YOLOE'} takes any labels"
        known = list(names.values())
        shown = ", ".join(known[:SHOWN_NAMES])
        if len(known) > SHOWN_NAMES:
            shown += f", ... ({len(known) - SHOWN_NAMES} more)"
        return False, (f"{self.name} ({state.path.name}) knows only its {len(known)} classes, not "
                       f"{', '.join(repr(u) for u in unknown)}; it knows: {shown}")

    # open vocabulary -----------------------------------------------------------------------
    @staticmethod
    def text_variant(state: _Loaded) -> str:
        """The text encoder the checkpoint was trained with, as ultralytics names it (YOLO-World: CLIP ViT-B/32)."""
        if state.open_vocabulary == "world":
            return "clip:ViT-B/32"
        return str(getattr(state.net, "text_model", "mobileclip:blt"))

    def text_model_file(self, state: _Loaded) -> Path:
        """The local text-encoder file an open-vocabulary checkpoint needs to take new class names."""
        from importlib.util import find_spec

        if find_spec("clip") is None:
            raise BackendUnavailable(f"{self.name}: {state.path.name} is open-vocabulary; its text encoder needs "
                                     "the Python package 'clip'",
                                     fix="pip install git+https://github.com/ultralytics/CLIP.git")
        variant = self.text_variant(state)
        base = variant.split(":")[0]
        if base not in TEXT_MODEL_FILES:
            raise BackendUnavailable(f"{self.name}: unknown text encoder {variant!r} in {state.path.name}")
        ref = self.settings().get("text_model")
        if ref:
            path = Path(os.path.expanduser(str(ref)))
        else:
            from ultralytics.utils import WEIGHTS_DIR

            path = Path(WEIGHTS_DIR) / TEXT_MODEL_FILES[base]
        if not path.is_file():
            raise BackendUnavailable(
                f"{self.name}: {state.path.name} needs its text encoder '{Path(TEXT_MODEL_FILES[base]).name}' "
                f"({variant}) to take new class names, and {path} is not a file; nothing is downloaded",
                fix=f"put the file there, or {self.setting_hint('text_model')}")
        return path

    def set_classes(self, state: _Loaded, labels: list[str]) -> None:
        """Give an open-vocabulary model these class names (once per distinct set)."""
        classes = tuple(labels)
        if state.classes == classes:
            return
        path = self.text_model_file(state)
        import torch

        device = next(state.net.parameters()).device
        if state.text_model is None:
            from ultralytics.nn.text_model import CLIP, MobileCLIPTS

            # a path (not an asset name) so ultralytics finds it on disk: attempt_download_asset and
            # clip.load both return an existing file as it is
            state.text_model = (CLIP(str(path), device) if self.text_variant(state).startswith("clip:")
                                else MobileCLIPTS(device, weight=str(path)))
        with torch.no_grad():
            state.net.clip_model = state.text_model
            if state.open_vocabulary == "world":
                state.net.set_classes(list(classes), cache_clip_model=True)
                state.net.names = list(classes)
                state.yolo.predictor = None
            else:
                embeddings = state.net.get_text_pe(list(classes), cache_clip_model=True)
                state.yolo.set_classes(list(classes), embeddings)
        state.classes = classes

    # running -------------------------------------------------------------------------------
    def run(self, image: Image, labels: list[str], threshold: float = 0.0, **_: Any) -> Detections:
        return self.run_batch([image], labels=labels, threshold=threshold)[0]

    def run_batch(self, images: list[Image], labels: list[str], threshold: float = 0.0, **_: Any) -> list[Detections]:
        state = self.loaded()
        conf = threshold if threshold and threshold > 0 else self._number("conf", DEFAULT_CONF)
        args = self.predict_args(conf)
        with state.lock:
            ok, why = self.suits({"labels": labels})
            if not ok:
                raise BackendUnavailable(why)
            index = class_index(state.names)
            wanted: dict[int, list[str]] = {}
            if all(match_class(q, index) is not None for q in labels):  # the classes it has now
                for q in labels:
                    wanted.setdefault(match_class(q, index), []).append(q)
            else:  # open vocabulary: these labels become its classes
                classes = list(dict.fromkeys(q.strip() for q in labels))
                self.set_classes(state, classes)
                wanted = {i: [q for q in labels if q.strip() == c] for i, c in enumerate(classes)}
            results = self.predict(state, images, classes=sorted(wanted), **args)
        out = []
        for image, res in zip(images, results):
            found = []
            if res.boxes is not None and len(res.boxes):
                xyxy = res.boxes.xyxy.float().cpu().tolist()
                scores = res.boxes.conf.float().cpu().tolist()
                cls = res.boxes.cls.int().cpu().tolist()
                for b, s, c in zip(xyxy, scores, cls):
                    for q in wanted.get(c, ()):
                        found.append(Box(*b, label=q, score=s))
            out.append(Detections(found, query=",".join(labels), image_size=image.size))
        return out


class YoloSegmentBackend(_YoloBase):
    """One object's mask from a YOLO -seg checkpoint: the instance that best matches the prompt."""

    tool = "segment"
    name = "yolo_seg"
    settings_name = "yolo_seg"
    weights_example = "/models/yolo11n-seg.pt"
    family = "ultralytics YOLO-seg"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        state, why = self.loaded_or_reason()
        if state is None:
            return False, why
        if state.task != "segment":
            return False, (f"{self.name}: {state.path.name} is a '{state.task}' checkpoint; segment needs a "
                           f"segmentation one (e.g. yolo11n-seg.pt)")
        given = [k for k in ("box", "point", "mask") if args.get(k) is not None]
        return True, (f"{self.name} ({state.path.name}) picks the instance of its {len(state.names)} classes "
                      f"best matching the {' and '.join(given) or 'prompt'}")

    def run(self, image: Image, box: Box | None = None, point: tuple[float, float] | None = None,
            mask: Mask | None = None, **_: Any) -> Mask:
        ok, why = self.suits({})
        if not ok:
            raise BackendUnavailable(why)
        state = self.loaded()
        conf = self._number("conf", DEFAULT_CONF)
        with state.lock:
            res = self.predict(state, [image], retina_masks=True, **self.predict_args(conf))[0]
        w, h = image.size
        hint = f"lower the confidence floor: conf = 0.1 under [backends.{self.settings_name}] (now {conf:g})"
        if res.masks is None or not len(res.masks):
            raise ToolError(f"{self.name} found no instance in the image at confidence >= {conf:g}", hint=hint)
        masks = res.masks.data.bool().cpu()
        if tuple(masks.shape[1:]) != (h, w):  # retina masks come at the image's size; stay safe if not
            raise ToolError(f"{self.name}: ultralytics returned {masks.shape[2]}x{masks.shape[1]} masks "
                            f"for a {w}x{h} image")
        choice = choose_instance(masks, res.boxes.xyxy.float().cpu(), res.boxes.conf.float().cpu(), box, point, mask)
        if choice is None:
            prompt = " and ".join(p for p, v in (("box", box), ("point", point), ("mask", mask)) if v is not None)
            raise ToolError(f"{self.name}: none of the {len(masks)} instances found (confidence >= {conf:g}) "
                            f"overlaps the {prompt} given", hint=hint)
        label = state.names.get(int(res.boxes.cls[choice]), "")
        return Mask(masks[choice].numpy(), label=label, score=float(res.boxes.conf[choice]))


def choose_instance(masks: Any, boxes: Any, scores: Any, box: Box | None, point: tuple[float, float] | None,
                    mask: Mask | None) -> int | None:
    """The instance best matching the prompts, or None when none overlaps them.

    A point keeps the instances whose mask holds that pixel; then the highest box IoU with ``box``
    (when given) plus mask IoU with ``mask`` (when given) wins, with confidence breaking ties (and
    alone choosing among the point's instances when no box or mask is given). A box or mask that no
    instance overlaps (IoU 0) matches nothing.
    """
    import torch

    n, h, w = masks.shape
    keep = torch.ones(n, dtype=torch.bool)
    if point is not None:
        x, y = int(point[0] // 1), int(point[1] // 1)
        if not (0 <= x < w and 0 <= y < h):
            return None
        keep &= masks[:, y, x]
    rank = torch.zeros(n)
    if box is not None:
        b = torch.tensor(box.xyxy, dtype=torch.float32)
        ix = (torch.minimum(boxes[:, 2], b[2]) - torch.maximum(boxes[:, 0], b[0])).clamp(min=0)
        iy = (torch.minimum(boxes[:, 3], b[3]) - torch.maximum(boxes[:, 1], b[1])).clamp(min=0)
        inter = ix * iy
        union = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1e-9), torch.zeros_like(inter))
        keep &= iou > 0
        rank += iou
    if mask is not None:
        m = torch.from_numpy(mask.array.copy())
        inter = (masks & m).sum((1, 2)).float()
        union = (masks | m).sum((1, 2)).float()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
        keep &= iou > 0
        rank += iou
    if not bool(keep.any()):
        return None
    candidates = [int(i) for i in torch.nonzero(keep).flatten()]
    return max(candidates, key=lambda i: (float(rank[i]), float(scores[i])))


def backends() -> list[Backend]:
    return [YoloDetectBackend(), YoloSegmentBackend()]
