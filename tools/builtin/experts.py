"""Model-backed tools (experts): detection, OCR, VQA, captioning, depth; and VisProg's LOC.

The expert tools are declared here; their backends come from other packages (entry points). With
no backend installed, calling one raises :class:`BackendUnavailable` naming the tool and the fix.

Backend contract (what ``backend.run`` receives and must return), per tool:

- ``detect``: ``run(image=Image, labels=list[str], threshold=float) -> Detections`` with boxes in
  the given image's own pixels, labelled with the query label they answer, scored 0..1.
- ``ocr``: ``run(image=Image) -> TextLines`` with boxes in the given image's own pixels.
- ``ask``: ``run(image=Image, question=str, choices=list[str]) -> str`` (choices may be empty); a
  backend whose ``run`` names ``context`` also gets ``context=str`` (what the whole image shows, e.g.
  TextCoT's overview when ``image`` is a crop; may be empty).
- ``caption``: ``run(image=Image) -> str``.
- ``locate`` (tools/builtin/textcot.py): ``run(image=Image, question=str) -> Detections`` with one box
  in the given image's own pixels (plus ``context=str`` when ``run`` names it).

A backend whose ``run`` names ``ctx`` is given the :class:`ToolContext`, so it can call other tools
(an offline backend that fuses several experts); who answered those calls lands in the trace.
- ``depth``: ``run(image=Image) -> DepthMap`` over the given image's pixel grid, convention stated.
- ``segment``: ``run(image=Image, box=Box?, point=(x, y)?, mask=Mask?) -> Mask`` over the given
  image's grid; prompts are in the given image's own pixels, only those given are passed. A backend
  that cannot use a prompt kind says so in ``suits`` (e.g. GrabCut needs a box or a mask).

The tools map boxes back to root-image pixels (``image.to_root``), so crops compose.
"""

from __future__ import annotations

from typing import Any, Literal

from vistrace.errors import ToolArgumentError, ToolError
from vistrace.values import Box, DepthMap, Detections, Image, Keypoints, Labels, Mask, TextLine, TextLines

from ..backends import Backend, accepts
from ..registry import ToolContext, tool

REGION_NAMES = ("TOP", "BOTTOM", "LEFT", "RIGHT")
VISPROG_LOC_THRESHOLD = 0.1  # VisProg LocInterpreter(thresh=0.1, nms_thresh=0.5)
VISPROG_LOC_NMS = 0.5


def split_labels(query: str) -> list[str]:
    """The labels of a comma-separated query, trimmed, empty ones dropped."""
    return [q.strip() for q in str(query).split(",") if q.strip()]


def region_box(image: Image, name: str) -> Box:
    """VisProg LOC's half-image box for TOP/BOTTOM/LEFT/RIGHT, in root pixels.

    Computed in the image's own pixel grid exactly as VisProg does (``w-1``/``h-1`` edges,
    ``int(h/2)`` / ``int(w/2)`` splits), then mapped to the root.
    """
    w, h = image.size
    boxes = {
        "TOP": (0, 0, w - 1, int(h / 2)),
        "BOTTOM": (0, int(h / 2), w - 1, h - 1),
        "LEFT": (0, 0, int(w / 2), h - 1),
        "RIGHT": (int(w / 2), 0, w - 1, h - 1),
    }
    if name not in boxes:
        raise ToolArgumentError(f"region name must be one of {', '.join(REGION_NAMES)}, got {name!r}")
    return image.to_root(Box(*boxes[name], label=name))


def _check_query(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    if not split_labels(value):
        return "detect needs at least one object name, e.g. 'dog' or 'dog,cat'"
    if value.strip() in REGION_NAMES:
        return f"{value!r} is a VisProg region name, not an object: use region(image, {value!r}) or LOC"
    return None


def _check_loc_object(value: object) -> str | None:
    if isinstance(value, str) and value.strip().upper() in REGION_NAMES and value not in REGION_NAMES:
        return f"region names are upper-case: use {value.strip().upper()!r}, not {value!r}"
    if isinstance(value, str) and not value.strip():
        return "LOC needs an object name or one of TOP, BOTTOM, LEFT, RIGHT"
    return None


def _expect(value: Any, kind: type, tool_name: str, backend: Backend) -> Any:
    if not isinstance(value, kind):
        raise ToolError(f"backend '{backend.name}' of {tool_name} returned {type(value).__name__}, "
                        f"expected {kind.__name__}")
    return value


@tool(category="expert", expert=True, literal_checks={"query": _check_query})
def detect(image: Image, query: str, threshold: float = 0.0, backend: Backend = None) -> Detections:
    """Find objects named in a comma-separated query; boxes in root-image pixels, best first.

    Boxes found in a crop are mapped back to the root image. Detections scoring below
    ``threshold`` are dropped (0 keeps whatever the backend returns).

    Args:
        image: The image (or a crop of one) to search.
        query: Object names separated by commas, e.g. 'dog' or 'red car,person'.
        threshold: Lowest confidence kept, 0..1.

    Returns:
        The detections, most confident first, labelled with the query name they answer.
    """
    labels = split_labels(query)
    if not labels:
        raise ToolArgumentError(_check_query(query) or f"detect: empty query {query!r}")
    found = _expect(backend.run(image=image, labels=labels, threshold=threshold), Detections, "detect", backend)
    boxes = [b for b in image.to_root(found) if b.score is None or b.score >= threshold]
    dets = Detections(boxes, query=",".join(labels), image_size=image.root_size)
    return dets.sorted_by("score")


@tool(category="expert", expert=True)
def ocr(image: Image, backend: Backend = None) -> TextLines:
    """Read the text in an image: lines with boxes (root-image pixels) and confidences.

    Args:
        image: The image (or a crop of one) to read.

    Returns:
        The recognised lines in reading order.
    """
    found = _expect(backend.run(image=image), TextLines, "ocr", backend)

    def to_root(line: TextLine) -> TextLine:
        return TextLine(line.text, image.to_root(line.box), line.confidence, tuple(to_root(w) for w in line.words))

    return TextLines(to_root(line) for line in found)


def backend_extras(backend: Backend, ctx: ToolContext | None, **optional: Any) -> dict[str, Any]:
    """The optional arguments this backend's ``run`` declares: ``ctx`` and any of ``optional``."""
    extra = {k: v for k, v in optional.items() if accepts(backend, k)}
    if ctx is not None and accepts(backend, "ctx"):
        extra["ctx"] = ctx
    return extra


def _check_question(args: dict[str, Any]) -> None:
    if not str(args.get("question", "")).strip():
        raise ToolArgumentError("ask needs a non-empty question")


@tool(category="expert", expert=True, precheck=_check_question)
def ask(image: Image, question: str, choices: str = "", context: str = "", ctx: ToolContext = None,
        backend: Backend = None) -> str:
    """Answer a question about an image in a few words (visual question answering).

    ``context`` describes the whole image when ``image`` is a crop of it (TextCoT passes the
    overview caption); backends that take it use it, the others answer from the image alone.

    Args:
        image: The image (or a crop of one) the question is about.
        question: The question, e.g. 'What color is the car?'.
        choices: Optional comma-separated answers to choose from, e.g. 'yes,no'.
        context: Optional description of the whole image, e.g. its caption (empty: none).

    Returns:
        The answer text.
    """
    _check_question({"question": question})
    options = [c.strip() for c in choices.split(",") if c.strip()]
    extra = backend_extras(backend, ctx, context=context)
    answer = _expect(backend.run(image=image, question=question, choices=options, **extra), str, "ask", backend)
    return answer.strip()


@tool(category="expert", expert=True)
def caption(image: Image, ctx: ToolContext = None, backend: Backend = None) -> str:
    """Describe an image in one sentence.

    Args:
        image: The image (or a crop of one) to describe.

    Returns:
        The caption.
    """
    return _expect(backend.run(image=image, **backend_extras(backend, ctx)), str, "caption", backend).strip()


DEPTH_HINT = ("monocular depth needs weights you bring (DPT or Depth-Anything: see docs/adapters.md); "
              "for a rectified stereo pair, stereo_depth(left, right) needs none")


@tool(category="expert", expert=True, unavailable_hint=DEPTH_HINT)
def depth(image: Image, backend: Backend = None) -> DepthMap:
    """Estimate per-pixel depth; the map states whether larger values are nearer or farther.

    The map covers the given image's pixel grid (the root image's when it is not a crop); map a
    root box into it with ``image.from_root(box)``.

    Args:
        image: The image (or a crop of one) to estimate depth for.

    Returns:
        The depth map, with its convention ('larger_is_nearer' or 'larger_is_farther').
    """
    dm = _expect(backend.run(image=image), DepthMap, "depth", backend)
    if (dm.width, dm.height) != image.size:
        raise ToolError(f"backend '{backend.name}' of depth returned a {dm.width}x{dm.height} map "
                        f"for a {image.width}x{image.height} image")
    return dm


@tool(category="image")
def region(image: Image, name: Literal["TOP", "BOTTOM", "LEFT", "RIGHT"]) -> Detections:
    """The top, bottom, left or right half of an image as a box (VisProg LOC region names).

    Args:
        image: The image (or a crop of one).
        name: 'TOP', 'BOTTOM', 'LEFT' or 'RIGHT' (upper-case, as VisProg writes them).

    Returns:
        One box covering that half, in root-image pixels.
    """
    return Detections([region_box(image, name)], query=name, image_size=image.root_size)


@tool(category="image", literal_checks={"object": _check_loc_object})
def loc(image: Image, object: str, ctx: ToolContext = None) -> Detections:
    """Locate an object (VisProg LOC): TOP/BOTTOM/LEFT/RIGHT give a half-image box, else detect.

    For object names VisProg's settings apply: detections above 0.1 confidence, non-maximum
    suppression at IoU 0.5, best first.

    Args:
        image: The image (or a crop of one) to search.
        object: An object name, or one of the region names TOP, BOTTOM, LEFT, RIGHT.

    Returns:
        The boxes found, in root-image pixels.
    """
    if object in REGION_NAMES:
        return Detections([region_box(image, object)], query=object, image_size=image.root_size)
    problem = _check_loc_object(object)
    if problem:
        raise ToolArgumentError(problem)
    dets = ctx.call("detect", image=image, query=object, threshold=VISPROG_LOC_THRESHOLD)
    return dets.nms(VISPROG_LOC_NMS)


@tool(category="expert", expert=True)
def detect_faces(image: Image, threshold: float = 0.0, backend: Backend = None) -> Detections:
    """Find faces; boxes in root-image pixels labelled 'face', most confident first.

    Args:
        image: The image (or a crop of one) to search.
        threshold: Lowest confidence kept, 0..1.

    Returns:
        The face boxes.
    """
    found = _expect(backend.run(image=image), Detections, "detect_faces", backend)
    boxes = [b for b in image.to_root(found) if b.score is None or b.score >= threshold]
    return Detections(boxes, query="face", image_size=image.root_size).sorted_by("score")


@tool(category="expert", expert=True)
def pose(image: Image, backend: Backend = None) -> Keypoints:
    """Estimate one person's body pose: 17 named COCO keypoints in root-image pixels with scores.

    Args:
        image: The image (or a crop around the person) to analyse.

    Returns:
        The keypoints (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles).
    """
    kp = _expect(backend.run(image=image), Keypoints, "pose", backend)
    sx, sy = image.scale
    ox, oy = image.offset
    return Keypoints({n: (ox + x / sx, oy + y / sy, s) for n, (x, y, s) in kp.points.items()}, kp.score)


@tool(category="expert", expert=True)
def classify(image: Image, top_k: int = 5, backend: Backend = None) -> Labels:
    """Name what the whole image shows (ImageNet-1k classes), best first with scores.

    Args:
        image: The image (or a crop of one) to classify.
        top_k: How many labels to return (1..1000).

    Returns:
        The ``top_k`` labels with their probabilities.
    """
    if not 1 <= top_k <= 1000:
        raise ToolArgumentError(f"top_k must be between 1 and 1000, got {top_k}")
    return _expect(backend.run(image=image, top_k=top_k), Labels, "classify", backend)


@tool(category="expert")
def find_text(image: Image, text: str, ctx: ToolContext = None) -> TextLines:
    """Find where a text appears: the OCR lines that contain it (case-insensitive), in root pixels.

    Args:
        image: The image (or a crop of one) to read.
        text: The text to look for, e.g. 'TOTAL'.

    Returns:
        The matching lines (empty when the text is not there).
    """
    if not text.strip():
        raise ToolArgumentError("find_text needs a non-empty text")
    lines = ctx.call("ocr", image=image)
    needle = " ".join(text.lower().split())
    return TextLines(ln for ln in lines if needle in " ".join(ln.text.lower().split()))


def _check_prompts(args: dict[str, Any]) -> None:
    box, point, mask, image = args.get("box"), args.get("point"), args.get("mask"), args["image"]
    if isinstance(box, Detections) and not len(box):
        raise ToolArgumentError("segment needs a box; the Detections given are empty")
    if box is None and point is None and mask is None:
        raise ToolArgumentError("segment needs a prompt: box=..., point=[x, y] or mask=...")
    if point is not None and len(point) != 2:
        raise ToolArgumentError(f"point must be [x, y], got {len(point)} numbers")
    if mask is not None and (mask.width, mask.height) != image.size:
        raise ToolArgumentError(f"mask is {mask.width}x{mask.height}, the image {image.width}x{image.height}: "
                                "give a mask over the same pixel grid")


@tool(category="expert", expert=True, precheck=_check_prompts)
def segment(image: Image, box: Box | Detections | None = None, point: list[float] | None = None,
            mask: Mask | None = None, backend: Backend = None) -> Mask:
    """Segment one object given a box, a point on it, or a rough mask: a pixel mask over the image's grid.

    Give at least one prompt; several may be combined (e.g. a box and a point inside it).

    Args:
        image: The image (or a crop of one) to segment.
        box: The object's box in root-image pixels, or Detections whose first box is used.
        point: A point [x, y] on the object, in root-image pixels.
        mask: A rough mask of the object over the image's grid, to refine.

    Returns:
        The object's mask (same size as ``image``).
    """
    _check_prompts({"image": image, "box": box, "point": point, "mask": mask})
    if isinstance(box, Detections):
        box = box[0]
    args: dict[str, Any] = {"image": image}
    if box is not None:
        args["box"] = image.from_root(box)
    if point is not None:
        sx, sy = image.scale
        ox, oy = image.offset
        args["point"] = ((float(point[0]) - ox) * sx, (float(point[1]) - oy) * sy)
    if mask is not None:
        args["mask"] = mask
    out = _expect(backend.run(**args), Mask, "segment", backend)
    if (out.width, out.height) != image.size:
        raise ToolError(f"backend '{backend.name}' of segment returned a {out.width}x{out.height} mask "
                        f"for a {image.width}x{image.height} image")
    return out


TOOLS = (detect, ocr, ask, caption, depth, region, loc, detect_faces, pose, classify, find_text, segment)
