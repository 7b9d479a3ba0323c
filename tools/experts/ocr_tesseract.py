"""``ocr`` by Tesseract (the Debian ``tesseract-ocr`` binary, LSTM engine, ``eng`` traineddata), via pytesseract.

Preprocessing (chosen by measurement on phototest, shrunk phototest and 20 SROIE receipts, see
docs/benchmarks.md "OCR"): grayscale; when the text is small (median connected-component height
below ``TARGET_HEIGHT`` = 20 px, estimated on an Otsu-binarised copy) the image is upscaled by
cubic interpolation until it reaches that (at most ``MAX_SCALE``×) — roughly what 300 dpi gives
10 pt print; then adaptive (Gaussian) binarisation; page segmentation ``--psm 6`` (one uniform
block), which read the most receipt totals. Without the upscaling, phototest shrunk to 7 px text
has 15–18 % CER; with it, 0 %.

Rotation: a page whose first reading is poor (length-weighted word confidence below
``OSD_BELOW``) is given to Tesseract's orientation detection (``--psm 0``, needs
``osd.traineddata``); a confident verdict (orientation confidence ≥ ``OSD_MIN_CONFIDENCE``) turns
the page upright and it is read again; the better-scoring reading is kept. Boxes are mapped back to
the given image's pixels.

Lines: Tesseract's words grouped by (block, paragraph, line), then rows as ``ocr_common.group_rows``
makes them, so both backends order and merge lines the same way.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from vistrace.errors import BackendUnavailable
from vistrace.values import Image, TextLines

from ..backends import Availability, Backend
from .ocr_common import Segment, group_rows, rotate_segment_back, row_to_line

FIX = "apt-get install -y tesseract-ocr tesseract-ocr-eng && pip install pytesseract"
LANG = "eng"
PSM = 6                 # a single uniform block of text (measured best on receipts)
TARGET_HEIGHT = 20.0    # median glyph height (px) small text is upscaled to
MAX_SCALE = 4.0
BINARIZE = "adaptive"    # "none" | "otsu" | "adaptive" (Gaussian, 31 px block, C=15)
OSD_BELOW = 0.5         # a first reading less confident than this asks for the page orientation
                        # (measured: turned phototest pages 0.23, upright pages and receipts 0.59..0.96)
OSD_MIN_CONFIDENCE = 2.0  # Tesseract's orientation confidence needed to turn the page
TIMEOUT_S = 120


@functools.lru_cache(maxsize=1)
def probe() -> dict[str, Any]:
    """What is installed: the binary, its version, its tessdata folder and languages (asked once)."""
    info: dict[str, Any] = {"binary": shutil.which("tesseract"), "version": "", "tessdata": None,
                            "langs": [], "error": ""}
    if not info["binary"]:
        info["error"] = "the tesseract binary is not on PATH"
        return info
    try:
        out = subprocess.run([info["binary"], "--version"], capture_output=True, text=True, timeout=20)
        m = re.search(r"tesseract\s+v?([\d.]+\S*)", out.stdout + out.stderr)
        info["version"] = m.group(1) if m else ""
        out = subprocess.run([info["binary"], "--list-langs"], capture_output=True, text=True, timeout=20)
        text = out.stdout + out.stderr
        m = re.search(r'languages in "([^"]+)"', text)
        info["tessdata"] = m.group(1) if m else None
        info["langs"] = [ln.strip() for ln in text.splitlines()[1:] if ln.strip() and " " not in ln.strip()]
    except (OSError, subprocess.SubprocessError) as exc:
        info["error"] = f"running {info['binary']} failed: {exc}"
    return info


def _traineddata(lang: str) -> str:
    folder = probe().get("tessdata")
    return str(Path(folder) / f"{lang}.traineddata") if folder else f"{lang}.traineddata"


def text_height(gray) -> float:
    """Median height (px) of the dark connected components that look like glyphs (0 when none)."""
    import cv2
    import numpy as np

    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    h, w = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
    glyph = (h >= 4) & (h < gray.shape[0] / 4) & (w < gray.shape[1] / 4)
    return float(np.median(h[glyph])) if glyph.any() else 0.0


def preprocess(image: Image, target_height: float = TARGET_HEIGHT, binarize: str = BINARIZE):
    """Grayscale, upscaled when the text is small, binarised as set: (array, scale factor)."""
    import cv2
    import numpy as np

    gray = np.asarray(image.pil.convert("L"))
    height = text_height(gray)
    scale = min(MAX_SCALE, target_height / height) if height and target_height else 1.0
    if scale > 1.05:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    else:
        scale = 1.0
    if binarize == "otsu":
        _, gray = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    elif binarize == "adaptive":
        gray = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, 31, 15)
    return np.ascontiguousarray(gray), scale


def read_lines(array, scale: float, psm: int = PSM) -> list[Segment]:
    """Tesseract's lines of ``array`` (words grouped by block/paragraph/line), boxes divided by ``scale``."""
    import pytesseract

    data = pytesseract.image_to_data(array, lang=LANG, config=f"--psm {psm}", timeout=TIMEOUT_S,
                                     output_type=pytesseract.Output.DICT)
    lines: dict[tuple[int, int, int], list[Segment]] = {}
    for i, text in enumerate(data["text"]):
        conf = float(data["conf"][i])
        if conf < 0 or not str(text).strip():
            continue
        x, y = data["left"][i] / scale, data["top"][i] / scale
        w, h = data["width"][i] / scale, data["height"][i] / scale
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        lines.setdefault(key, []).append(Segment(str(text).strip(), (x, y, x + w, y + h), conf / 100.0))
    segs = []
    for words in lines.values():
        weight = sum(len(w.text) for w in words)
        segs.append(Segment(" ".join(w.text for w in words),
                            (min(w.box[0] for w in words), min(w.box[1] for w in words),
                             max(w.box[2] for w in words), max(w.box[3] for w in words)),
                            sum(w.confidence * len(w.text) for w in words) / weight, words))
    return segs


def confidence(segments: list[Segment]) -> float:
    weight = sum(len(s.text) for s in segments)
    return sum(s.confidence * len(s.text) for s in segments) / weight if weight else 0.0


def osd_turn(array) -> tuple[int, float]:
    """Quarter turns (``np.rot90``'s k) that make the page upright per Tesseract's OSD, and its confidence."""
    import pytesseract

    try:
        osd = pytesseract.image_to_osd(array, config="--psm 0", timeout=TIMEOUT_S)
    except pytesseract.TesseractError:  # too few characters to decide
        return 0, 0.0
    rotate = re.search(r"Rotate:\s*(\d+)", osd)
    conf = re.search(r"Orientation confidence:\s*([\d.]+)", osd)
    degrees = int(rotate.group(1)) if rotate else 0  # clockwise degrees that make the page upright
    return (4 - degrees // 90) % 4, float(conf.group(1)) if conf else 0.0


def recognise(image: Image, *, fix_rotation: bool = True, psm: int = PSM, target_height: float = TARGET_HEIGHT,
              binarize: str = BINARIZE) -> tuple[TextLines, int]:
    """Read ``image``: lines in reading order (boxes in its own pixels), and the quarter turns applied."""
    import numpy as np

    array, scale = preprocess(image, target_height, binarize)
    segments, turn = read_lines(array, scale, psm), 0
    if fix_rotation and confidence(segments) < OSD_BELOW and "osd" in probe()["langs"]:
        k, conf = osd_turn(array)
        if k and conf >= OSD_MIN_CONFIDENCE:
            turned = read_lines(np.ascontiguousarray(np.rot90(array, k)), scale, psm)
            if confidence(turned) > confidence(segments):
                segments, turn = turned, k
    w, h = image.size
    rows = group_rows(segments)
    return TextLines(row_to_line([rotate_segment_back(s, turn, w, h) for s in row]) for row in rows), turn


class TesseractBackend(Backend):
    """Tesseract LSTM (``eng``), the fallback ``ocr`` backend."""

    tool = "ocr"
    name = "tesseract"
    model = "tesseract eng (LSTM)"
    version = ""
    priority = 10

    def __init__(self, fix_rotation: bool = True):
        self.fix_rotation = fix_rotation
        self.last_turn = 0
        found = probe()["version"]
        self.version = found or "not installed"
        self.model = f"tesseract {found or '(not installed)'} {LANG} (LSTM)"

    def availability(self) -> Availability:
        if importlib.util.find_spec("pytesseract") is None:
            return Availability(False, "python package 'pytesseract' is not installed", FIX)
        if importlib.util.find_spec("cv2") is None:
            return Availability(False, "python package 'opencv-python-headless' is not installed",
                                "pip install opencv-python-headless")
        info = probe()
        if info["error"]:
            return Availability(False, info["error"], FIX)
        if LANG not in info["langs"]:
            return Availability(False, f"tesseract has no '{LANG}' model: {_traineddata(LANG)} is missing", FIX)
        return Availability(True, f"tesseract {info['version']} with {_traineddata(LANG)}")

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        image = args.get("image")
        if isinstance(image, Image) and min(image.size) < 4:
            return False, f"the image is {image.width}x{image.height} px, too small to hold text"
        return True, "tesseract: LSTM reader for printed, scanned documents (weaker on receipts and photos)"

    def run(self, image: Image) -> TextLines:
        info = probe()
        if info["error"] or LANG not in info["langs"]:
            raise BackendUnavailable(info["error"] or f"tesseract model missing: {_traineddata(LANG)}", fix=FIX)
        lines, self.last_turn = recognise(image, fix_rotation=self.fix_rotation)
        return lines


def backends() -> list[Backend]:
    return [TesseractBackend()]
