"""What the OCR backends share: reading order, page rotation arithmetic, and the measures we judge them by.

- ``group_rows``: text segments (a detector's boxes, or Tesseract's words) become lines in reading
  order: segments that overlap vertically by at least half the smaller height share a row; rows go
  top to bottom, segments in a row left to right, joined by one space. A receipt's ``TOTAL`` and its
  amount, detected as two boxes on one row, become one line ``TOTAL 33.90``.
- ``rotate_back``: a box found in ``np.rot90(image, k)`` mapped back to the unrotated image.
- ``levenshtein`` / ``cer``: character error rate, the edit distance over the reference length.
- ``amount_found``: whether a receipt total (e.g. ``RM 3.90``) appears in OCR text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from vistrace.values import Box, TextLine

ROW_OVERLAP = 0.5  # share of the smaller height two segments must overlap vertically to share a row


@dataclass
class Segment:
    """A piece of recognised text on one row, in the pixels of the image it was read from."""

    text: str
    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    confidence: float
    words: list["Segment"] = field(default_factory=list)

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def cy(self) -> float:
        return (self.box[1] + self.box[3]) / 2


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def group_rows(segments: list[Segment]) -> list[list[Segment]]:
    """Segments grouped into rows (reading order: rows top to bottom, segments left to right).

    A segment joins the row whose horizontally nearest member it overlaps most vertically, when that
    overlap is at least ``ROW_OVERLAP`` of the smaller of the two heights; else it starts a row.
    """
    rows: list[list[Segment]] = []
    for seg in sorted((s for s in segments if s.text.strip()), key=lambda s: (s.cy, s.box[0])):
        best, best_score = None, 1.0
        sx = (seg.box[0] + seg.box[2]) / 2
        for row in rows:
            # compare with the row's horizontally nearest member (a slanted line drifts across the page)
            near = min(row, key=lambda r: abs((r.box[0] + r.box[2]) / 2 - sx))
            limit = ROW_OVERLAP * max(1e-6, min(seg.height, near.height))
            score = _overlap((seg.box[1], seg.box[3]), (near.box[1], near.box[3])) / limit
            if score >= best_score:
                best, best_score = row, score
        if best is None:
            rows.append([seg])
        else:
            best.append(seg)
    for row in rows:
        row.sort(key=lambda s: s.box[0])
    rows.sort(key=lambda row: sum(s.cy for s in row) / len(row))
    return rows


def _box(seg: Segment) -> Box:
    return Box(*(round(v, 1) for v in seg.box))


def row_to_line(row: list[Segment]) -> TextLine:
    """One row of segments as a TextLine: texts joined by a space, boxes united, length-weighted confidence."""
    text = " ".join(s.text.strip() for s in row)
    x1, y1 = min(s.box[0] for s in row), min(s.box[1] for s in row)
    x2, y2 = max(s.box[2] for s in row), max(s.box[3] for s in row)
    weight = sum(max(1, len(s.text.strip())) for s in row)
    conf = sum(s.confidence * max(1, len(s.text.strip())) for s in row) / weight
    words = tuple(TextLine(w.text, _box(w), round(w.confidence, 4)) for s in row for w in (s.words or [s]))
    return TextLine(text, Box(round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)), round(conf, 4), words)


def lines_from_segments(segments: list[Segment]) -> list[TextLine]:
    return [row_to_line(row) for row in group_rows(segments)]


# ------------------------------------------------------------------------------ page rotation
def rotate_point_back(x: float, y: float, k: int, width: int, height: int) -> tuple[float, float]:
    """A point of ``np.rot90(img, k)`` (counter-clockwise quarter turns) in the unrotated ``img``.

    ``width`` and ``height`` are the unrotated image's.
    """
    k %= 4
    if k == 0:
        return x, y
    if k == 1:  # rot90 CCW: (x, y) -> (y, W - x); inverse (x', y') -> (W - y', x')
        return width - y, x
    if k == 2:
        return width - x, height - y
    return y, height - x  # k == 3 (clockwise): (x, y) -> (H - y, x); inverse (x', y') -> (y', H - x')


def rotate_back(box: tuple[float, float, float, float], k: int, width: int, height: int) -> tuple[float, float, float, float]:
    """The axis-aligned box, in the unrotated image, of ``box`` found in ``np.rot90(img, k)``."""
    pts = [rotate_point_back(px, py, k, width, height) for px, py in
           ((box[0], box[1]), (box[2], box[1]), (box[2], box[3]), (box[0], box[3]))]
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return min(xs), min(ys), max(xs), max(ys)


def rotate_segment_back(seg: Segment, k: int, width: int, height: int) -> Segment:
    return Segment(seg.text, rotate_back(seg.box, k, width, height), seg.confidence,
                   [rotate_segment_back(w, k, width, height) for w in seg.words])


# ------------------------------------------------------------------------------ measures
def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions, each costing 1) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def normalize_page_text(text: str) -> str:
    """Text compared for CER: each line's runs of spaces become one space, blank lines are dropped."""
    lines = (" ".join(line.split()) for line in str(text).splitlines())
    return "\n".join(line for line in lines if line)


def cer(hypothesis: str, reference: str) -> float:
    """Character error rate: levenshtein(hyp, ref) / len(ref), both normalised by ``normalize_page_text``."""
    ref = normalize_page_text(reference)
    return levenshtein(normalize_page_text(hypothesis), ref) / max(1, len(ref))


_CURRENCY = re.compile(r"^(?:RM|MYR|\$|USD)\s*", re.IGNORECASE)


def normalize_amount(total: str) -> str:
    """A receipt total as a bare number: currency prefix (RM, MYR, $, USD) and spaces removed, '1,234.50' -> '1234.50'."""
    t = _CURRENCY.sub("", str(total).strip()).replace(" ", "")
    return t.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?", t) else t


def amount_found(total: str, text: str) -> bool:
    """Whether ``total`` appears in OCR ``text`` as a whole number (no digit right before or after it).

    The OCR text is normalised first: spaces around a '.' or ',' between digits are removed
    ('33. 90' -> '33.90'), and thousands separators ('1,234.50') dropped. The amount must match its
    digits and decimal point exactly, so '3.90' does not match inside '13.90' or '3.905'.
    """
    amount = normalize_amount(total)
    if not amount:
        return False
    t = re.sub(r"(?<=\d)\s*([.,])\s*(?=\d)", r"\1", str(text))
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)
    return re.search(rf"(?<![\d.]){re.escape(amount)}(?![\d])", t) is not None
