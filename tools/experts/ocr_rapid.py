"""``ocr`` by RapidOCR: PP-OCRv6 small detection + recognition and the PP-OCR mobile text-direction
classifier, all ONNX files that ship inside the ``rapidocr==3.10.0`` wheel, run by onnxruntime.

Nothing is downloaded: every model path is given to RapidOCR explicitly (``Det.model_path``,
``Cls.model_path``, ``Rec.model_path``; the recognition model carries its character list in its
ONNX metadata, so no ``rec_keys_path`` is fetched). A missing file is a :class:`BackendUnavailable`
naming it, with the command that restores it.

Page rotation: RapidOCR turns tall line crops a quarter turn and its classifier flips upside-down
crops, so it reads rotated text, but the lines come out in the wrong order and some are misread.
We look at what the first pass saw: when most of the detected text (weighted by box length) stands
on end, or the classifier calls most of it upside down, the page is turned upright (``np.rot90``)
and read again. The second reading is kept when it sees an upright page and its confidence is not
lower (by more than 0.02); boxes are mapped back to the given image's pixels and lines are ordered in the upright
page. Lines are the detector's boxes grouped into rows (``ocr_common.group_rows``), so a receipt's
``TOTAL`` and its amount form one line; words are RapidOCR's word boxes (``return_word_box``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

from vistrace.errors import BackendUnavailable
from vistrace.values import Image, TextLines

from ..backends import Availability, Backend
from ..model_cache import MODELS
from .ocr_common import Segment, group_rows, rotate_segment_back, row_to_line

RAPIDOCR_VERSION = "3.10.0"
FIX = f"pip install rapidocr=={RAPIDOCR_VERSION} onnxruntime opencv-python-headless"
MODEL_FILES = {  # RapidOCR config section -> file in the wheel's rapidocr/models/
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}
TALL = 1.5         # RapidOCR turns a line crop a quarter turn when its height/width >= 1.5
PAGE_VOTE = 0.5    # share of the detected text (by box length) that decides a page turn
KEEP_MARGIN = 0.02  # a turned page's reading is kept unless its confidence is lower by more than this


def model_dir() -> Path | None:
    """``rapidocr/models`` inside the installed wheel, found without importing rapidocr."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).parent / "models"


def model_paths() -> dict[str, Path]:
    """The three ONNX files, by config section; raises BackendUnavailable naming a missing one."""
    root = model_dir()
    if root is None:
        raise BackendUnavailable("rapidocr is not installed", fix=FIX)
    paths = {section: root / name for section, name in MODEL_FILES.items()}
    for path in paths.values():
        if not path.is_file() or path.stat().st_size == 0:
            raise BackendUnavailable(f"rapidocr model file missing: {path}", fix=FIX)
    return paths


def engine_params(paths: dict[str, Path]) -> dict[str, Any]:
    """RapidOCR settings: local model files, onnxruntime on CPU, word boxes, quiet log."""
    return {
        "Global.log_level": "warning",
        "Global.return_word_box": True,
        "Global.model_root_dir": str(paths["Det"].parent),
        "Det.model_path": str(paths["Det"]),
        "Cls.model_path": str(paths["Cls"]),
        "Rec.model_path": str(paths["Rec"]),
    }


def load_engine() -> Any:
    """A RapidOCR engine with its three onnxruntime sessions created (no download is possible)."""
    paths = model_paths()
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise BackendUnavailable(f"rapidocr cannot be imported: {exc}", fix=FIX) from exc
    try:
        engine = RapidOCR(params=engine_params(paths))
        for loader in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
            getattr(engine, loader, lambda: None)()  # else RapidOCR creates the sessions on first use
    except Exception as exc:  # a corrupt file, an onnxruntime that cannot run it
        raise BackendUnavailable(f"rapidocr could not load its models from {paths['Det'].parent}: {exc}",
                                 fix=FIX) from exc
    return engine


def _quad_box(quad) -> tuple[float, float, float, float]:
    xs = [float(p[0]) for p in quad]
    ys = [float(p[1]) for p in quad]
    return min(xs), min(ys), max(xs), max(ys)


def _tall(quad) -> bool:
    (x0, y0), (x1, y1), _, (x3, y3) = [(float(p[0]), float(p[1])) for p in quad[:4]]
    width = ((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5
    height = ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
    return height >= TALL * max(width, 1e-6)


def page_turn(det_boxes, cls_res) -> int:
    """Quarter turns (``np.rot90``'s k) that make the page upright, from the first pass.

    Tall lines: RapidOCR turned each crop counter-clockwise; if the classifier then flipped most of
    them, the text ran bottom-to-top (page turned left) and the page needs a clockwise turn (k=3),
    else it ran top-to-bottom and needs k=1. Wide lines mostly flipped: the page is upside down (k=2).
    """
    if det_boxes is None or len(det_boxes) == 0 or not cls_res:
        return 0
    tall = flipped_tall = wide = flipped_wide = 0.0
    for quad, (label, score) in zip(det_boxes, cls_res):
        x1, y1, x2, y2 = _quad_box(quad)
        weight = max(x2 - x1, y2 - y1)
        flipped = "180" in str(label)  # the classifier's verdict, even below RapidOCR's 0.9 to flip it
        if _tall(quad):
            tall += weight
            flipped_tall += weight * flipped
        else:
            wide += weight
            flipped_wide += weight * flipped
    if tall > PAGE_VOTE * (tall + wide):
        return 3 if flipped_tall > PAGE_VOTE * tall else 1
    if flipped_wide > PAGE_VOTE * wide:
        return 2
    return 0


def _segments(output) -> list[Segment]:
    """RapidOCR's lines (with their word boxes when RapidOCR's words spell the line) as Segments."""
    boxes, txts, scores = getattr(output, "boxes", None), getattr(output, "txts", None), getattr(output, "scores", None)
    if boxes is None or txts is None or len(txts) == 0:
        return []
    # RapidOCR drops empty word groups, so groups are matched to lines by their text, in order
    groups = list(getattr(output, "word_results", None) or ())
    g = 0
    segs = []
    for quad, text, score in zip(boxes, txts, scores):
        words: list[Segment] = []
        if g < len(groups):
            group = [w for w in groups[g] if w and w[2] is not None]
            if "".join(str(w[0]) for w in group).replace(" ", "") == str(text).replace(" ", ""):
                words = [Segment(str(w[0]), _quad_box(w[2]), float(w[1])) for w in group if str(w[0]).strip()]
                g += 1
        segs.append(Segment(str(text), _quad_box(quad), float(score), words))
    return segs


def _confidence(segments: list[Segment]) -> float:
    """Mean recognition confidence, weighted by text length."""
    weight = sum(len(s.text) for s in segments)
    return sum(s.confidence * len(s.text) for s in segments) / weight if weight else 0.0


def read_page(engine, bgr) -> tuple[list[Segment], int]:
    """One RapidOCR pass (its own steps, so the classifier's verdicts are seen): segments, page turn."""
    ori = engine.load_img(bgr)
    img, op_record = engine.preprocess_img(ori)
    det_res, cls_res, rec_res, crops = engine.run_ocr_steps(img, op_record)
    turn = page_turn(det_res.boxes, getattr(cls_res, "cls_res", None))
    output = engine.build_final_output(ori, det_res, cls_res, rec_res, crops, op_record)
    return _segments(output), turn


def recognise(engine, image: Image, *, fix_rotation: bool = True) -> tuple[TextLines, int]:
    """Read ``image``: its lines in reading order (boxes in its own pixels), and the page turn applied."""
    import numpy as np

    rgb = np.asarray(image.pil.convert("RGB"))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    segments, turn = read_page(engine, bgr)
    if not fix_rotation or turn == 0:
        return TextLines(row_to_line(row) for row in group_rows(segments)), 0
    upright, again = read_page(engine, np.ascontiguousarray(np.rot90(bgr, turn)))
    if again != 0 or _confidence(upright) < _confidence(segments) - KEEP_MARGIN:
        # the turned page does not look upright either: keep what the first pass read
        return TextLines(row_to_line(row) for row in group_rows(segments)), 0
    w, h = image.size
    rows = group_rows(upright)  # reading order of the upright page, then boxes back to the given image
    return TextLines(row_to_line([rotate_segment_back(s, turn, w, h) for s in row]) for row in rows), turn


class RapidOCRBackend(Backend):
    """RapidOCR with the PP-OCRv6 small models bundled in its wheel (the default ``ocr`` backend)."""

    tool = "ocr"
    name = "rapidocr"
    model = "PP-OCRv6 small det/rec + ppocr mobile cls (rapidocr 3.10.0 wheel)"
    version = RAPIDOCR_VERSION
    priority = 20

    def __init__(self, fix_rotation: bool = True):
        self.fix_rotation = fix_rotation
        self.last_turn = 0  # quarter turns applied on the last call (for benchmarks and tests)

    def availability(self) -> Availability:
        for module in ("rapidocr", "onnxruntime", "cv2"):
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"python package '{module}' is not installed", FIX)
        try:
            installed = importlib.metadata.version("rapidocr")
        except importlib.metadata.PackageNotFoundError:
            installed = "unknown"
        if installed != RAPIDOCR_VERSION:
            return Availability(False, f"rapidocr {installed} is installed; its bundled models are pinned "
                                       f"to rapidocr {RAPIDOCR_VERSION}", FIX)
        try:
            model_paths()
        except BackendUnavailable as exc:
            return Availability(False, exc.message, FIX)
        return Availability(True, f"rapidocr {installed} with its bundled ONNX models")

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        image = args.get("image")
        if isinstance(image, Image) and min(image.size) < 4:
            return False, f"the image is {image.width}x{image.height} px, too small to hold text"
        return True, ("rapidocr: PP-OCRv6 detection + recognition for printed, scanned and scene text, "
                      "turned pages included; the most accurate OCR here (docs/benchmarks.md, OCR)")

    def engine(self) -> Any:
        paths = model_paths()
        size = sum(p.stat().st_size for p in paths.values())
        return MODELS.get(f"ocr/rapidocr/{RAPIDOCR_VERSION}", load_engine, size_bytes=4 * size)

    def run(self, image: Image) -> TextLines:
        lines, self.last_turn = recognise(self.engine(), image, fix_rotation=self.fix_rotation)
        return lines


def backends() -> list[Backend]:
    return [RapidOCRBackend()]
