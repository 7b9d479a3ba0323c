"""TextCoT's three stages offline: the experts we have (ImageNet classifier, COCO detector, OCR)
plus a small local LLM that reads what they found (the LLM-only document-QA idea).

- ``caption`` (FuseCap style): ``classify`` labels, ``detect`` COCO objects and an OCR summary
  are fused into one sentence by the LLM.
- ``locate``: the OCR lines, numbered and with their position on the page, are shown to the LLM
  with the question; a GBNF grammar lets it answer only valid line numbers (one or two lines), so
  even the 0.5B model cannot name a line that does not exist. The union of the chosen lines' boxes
  is the box.
- ``ask``: the image (TextCoT's zoomed crop) is read again with OCR at a higher resolution (its
  longer side raised to ``READ_SIDE`` px, at most ``MAX_UPSCALE`` times), and the LLM answers from
  that layout-aware text, with the overview as context when given. An image in which OCR finds no
  text is an error (this backend reads text; it does not see objects or colours), and questions
  with ``choices`` are refused in ``suits`` (use a VQA model: hf_vqa or vlm).

The LLM is ``[backends.textcot_offline] llm = "..."`` (env ``VISTRACE_TEXTCOT_OFFLINE_LLM``), else
``$VISTRACE_LLM``, else ``local`` (Qwen2.5-Coder-0.5B-Instruct GGUF); its name is the backend's
``model`` in the trace, and the experts it called are listed beside it. The pure pieces (prompts,
the line grammar, parsing the choice) are functions here, tested without a model.
"""

from __future__ import annotations

import re
from typing import Any

from vistrace.errors import BackendUnavailable, ToolError
from vistrace.settings import declare_table
from vistrace.values import Box, Detections, Image, TextLine, TextLines

from ..backends import Backend
from .llm_backend import LLMBackend, complete, llm_spec as shared_llm_spec

SETTINGS_NAME = "textcot_offline"
declare_table(SETTINGS_NAME)
VERSION = "1"
READ_SIDE = 896       # ask re-reads an image whose longer side is shorter than this, enlarged to it
MAX_UPSCALE = 2.0     # ... but never more than twice
MAX_PICK = 2          # locate chooses one line, or two when the answer spans two lines
MAX_LINES = 80        # lines shown to the LLM (receipts hold 20-70)
CAPTION_LABELS = 3    # ImageNet labels and
CAPTION_OBJECTS = 5   # COCO object names the caption prompt mentions
OCR_PREVIEW = 3       # first OCR lines quoted in the caption prompt
CAPTION_TOKENS = 48
LOCATE_TOKENS = 8
ANSWER_TOKENS = 32


# --- the pure pieces --------------------------------------------------------------------------------

def position(box: Box, size: tuple[int, int]) -> str:
    """Where a box sits on a page of ``size`` (root pixels): its top and left edge in whole percent."""
    w, h = max(1, size[0]), max(1, size[1])
    return f"y {round(100 * box.y1 / h)}%, x {round(100 * box.x1 / w)}%"


def numbered_lines(lines: TextLines, size: tuple[int, int], limit: int = MAX_LINES) -> str:
    """The OCR lines as the LLM sees them: ``N. [y T%, x L%] text``, one a line, numbered from 1."""
    return "\n".join(f"{i}. [{position(ln.box, size)}] {ln.text}" for i, ln in enumerate(lines.lines[:limit], 1))


def line_grammar(count: int, max_pick: int = MAX_PICK) -> str:
    """A GBNF grammar whose sentences are ``max_pick`` or fewer distinct-looking line numbers 1..count."""
    if count < 1:
        raise ToolError("line_grammar needs at least one line")
    numbers = " | ".join(f'"{n}"' for n in range(count, 0, -1))  # longer numbers first
    more = ' (", " line)?' * (max_pick - 1)
    return f"root ::= line{more}\nline ::= {numbers}\n"


def parse_line_choice(text: str, count: int, max_pick: int = MAX_PICK) -> list[int]:
    """The line numbers (1-based, in order, without repeats) in an LLM's reply; ToolError when there are
    none, too many, or one outside 1..count."""
    numbers = [int(n) for n in re.findall(r"\d+", str(text))]
    if not numbers:
        raise ToolError(f"locate: the LLM's reply {str(text)[:80]!r} names no line number (expected 1..{count})")
    picked = list(dict.fromkeys(numbers))
    bad = [n for n in picked if not 1 <= n <= count]
    if bad:
        raise ToolError(f"locate: the LLM named line {bad[0]}, but there are only {count} lines")
    if len(picked) > max_pick:
        raise ToolError(f"locate: the LLM named {len(picked)} lines ({picked}); at most {max_pick} were asked for")
    return picked


SYSTEM = "You read the text of documents and answer questions about it briefly."


def _lines_first(listing: str) -> str:
    # the same opening for locate and ask: llama.cpp reuses the evaluated prefix when the lines are the same
    return ("Lines of text read from an image, top to bottom. Each is: number. [position on the page] text.\n"
            f"{listing}\n\n")


def locate_messages(question: str, listing: str) -> list[tuple[str, str]]:
    """(role, text) pairs asking which numbered line answers ``question``."""
    user = (_lines_first(listing) + f"Question: {question}\n"
            "Which line holds the answer? Reply with its number only (two numbers, comma-separated, if the "
            "answer runs over two lines).")
    return [("system", SYSTEM), ("user", user)]


def answer_messages(question: str, listing: str, context: str = "") -> list[tuple[str, str]]:
    """(role, text) pairs asking for a short answer from the text read in an image (or a crop of it)."""
    where = f"These lines come from a zoomed-in part of a larger image. The whole image: {context.strip()}\n" \
        if context.strip() else ""
    user = (_lines_first(listing) + where + f"Question: {question}\n"
            "Answer with only the words or number that answer it, copied from the lines.")
    return [("system", SYSTEM), ("user", user)]


def caption_messages(labels: list[str], objects: list[str], text_lines: list[str], line_count: int) -> list[tuple[str, str]]:
    """(role, text) pairs asking for one sentence from what the experts found (FuseCap style)."""
    seen = [f"Scene classifier (ImageNet) says: {', '.join(labels) or 'nothing'}.",
            f"Object detector (COCO) found: {', '.join(objects) or 'no objects'}."]
    if line_count:
        quoted = " / ".join(t[:60] for t in text_lines)
        seen.append(f"Text reader found {line_count} lines of text, starting: {quoted}")
    else:
        seen.append("Text reader found no text.")
    user = ("Describe the image in one short sentence, using these observations of it:\n" + "\n".join(seen)
            + "\nSay what kind of image it is and what it mainly shows.")
    return [("system", "You write one-sentence image captions."), ("user", user)]


def clean_answer(text: str) -> str:
    """An LLM's short answer without surrounding quotes, a leading 'Answer:' or trailing lines."""
    first = next((ln.strip() for ln in str(text).splitlines() if ln.strip()), "")
    first = re.sub(r"^(?:the\s+)?answer\s*(?:is)?\s*[:\-]\s*", "", first, flags=re.IGNORECASE)
    return first.strip().strip("\"'`").strip()


def object_names(dets: Detections, limit: int = CAPTION_OBJECTS) -> list[str]:
    """The detected objects as 'N label' phrases, most frequent first."""
    counts: dict[str, int] = {}
    for b in dets:
        counts[b.label] = counts.get(b.label, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [f"{n} {label}" for label, n in ranked]


def read_size(size: tuple[int, int], target: int = READ_SIDE, most: float = MAX_UPSCALE) -> tuple[int, int] | None:
    """The size to re-read an image of ``size`` at (longer side raised towards ``target``), or None to keep it."""
    longer = max(size)
    if longer >= target:
        return None
    f = min(most, target / longer)
    return max(1, round(size[0] * f)), max(1, round(size[1] * f))


# --- the LLM ------------------------------------------------------------------------------------------

def llm_spec(explicit: str | None = None) -> str:
    """The LLM spec: the explicit one, the setting ``llm``, ``$VISTRACE_LLM``, else ``local``."""
    return shared_llm_spec(SETTINGS_NAME, explicit)


class _Offline(LLMBackend):
    """Shared by the three offline backends: which LLM, whether it can run here (see llm_backend)."""

    name = "textcot_offline"
    settings_name = SETTINGS_NAME
    version = VERSION
    priority = 0  # a configured model (hf_vqa, hf_caption, vlm) wins
    needs = "experts + "


class OfflineCaption(_Offline):
    """``caption``: ImageNet labels, COCO objects and an OCR summary fused into one sentence by the LLM."""

    tool = "caption"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, (f"textcot_offline: classify + detect + ocr fused into a sentence by {self.model} "
                      "(FuseCap style; no captioning model is configured)")

    def run(self, image: Image, ctx=None, **_: Any) -> str:
        if ctx is None:
            raise ToolError("textcot_offline caption needs the tool context to call classify, detect and ocr")
        from .centernet import LABELS

        labels = ctx.call("classify", image=image, top_k=CAPTION_LABELS)
        dets = ctx.call("detect", image=image, query=",".join(LABELS))
        lines = ctx.call("ocr", image=image)
        pairs = caption_messages([name.replace("_", " ") for name, _ in labels], object_names(dets),
                                 [ln.text for ln in lines.lines[:OCR_PREVIEW]], len(lines))
        text = clean_answer(complete(self.llm(), pairs, max_tokens=CAPTION_TOKENS, stop=["\n"]))
        if not text:
            raise ToolError(f"textcot_offline caption: {self.spec} wrote an empty caption")
        return text


class OfflineLocate(_Offline):
    """``locate``: the LLM picks the OCR line(s) that answer the question; their boxes' union is the box."""

    tool = "locate"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, f"textcot_offline: {self.model} picks the OCR lines that answer (grammar-constrained line numbers)"

    def run(self, image: Image, question: str, ctx=None, **_: Any) -> Detections:
        if ctx is None:
            raise ToolError("textcot_offline locate needs the tool context to call ocr")
        lines = ctx.call("ocr", image=image)  # root-image pixels
        if not len(lines):
            raise ToolError(f"locate: OCR found no text in the {image.width}x{image.height} image, "
                            "so there is no line that could answer")
        shown = TextLines(lines.lines[:MAX_LINES])
        listing = numbered_lines(shown, image.root_size)
        llm = self.llm()
        grammar = line_grammar(len(shown)) if getattr(llm, "supports_grammar", False) else None
        reply = complete(llm, locate_messages(question, listing), grammar=grammar, max_tokens=LOCATE_TOKENS)
        picked = [shown[i - 1] for i in parse_line_choice(reply, len(shown))]
        return Detections([image.from_root(choose_box(picked))], query=question, image_size=image.size)


def choose_box(picked: list[TextLine]) -> Box:
    """The union of the chosen lines' boxes, labelled with their text, scored by their mean confidence."""
    from ..builtin.textcot import union_box

    return union_box([ln.box for ln in picked], label=" / ".join(ln.text for ln in picked),
                     score=round(sum(ln.confidence for ln in picked) / len(picked), 4))


class OfflineAsk(_Offline):
    """``ask``: OCR re-reads the image (enlarged when small) and the LLM answers from that text."""

    tool = "ask"

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        if args.get("choices"):
            return False, ("textcot_offline answers free questions from the text an image shows; "
                           "for a choice among answers configure a VQA model (hf_vqa or vlm)")
        return True, (f"textcot_offline: ocr (re-read at >= {READ_SIDE} px) + {self.model} answers from the text "
                      "(no VQA model is configured)")

    def run(self, image: Image, question: str, choices: list[str] | None = None, context: str = "", ctx=None,
            **_: Any) -> str:
        if ctx is None:
            raise ToolError("textcot_offline ask needs the tool context to call ocr")
        if choices:
            raise BackendUnavailable(self.suits({"choices": choices})[1])
        size = read_size(image.size)
        sharp = image if size is None else image.crop(image.region(), out_size=size,
                                                      source=f"{image.source} enlarged to {size[0]}x{size[1]}")
        lines = ctx.call("ocr", image=sharp)
        if not len(lines):
            raise ToolError(f"textcot_offline answers from text, and OCR found none in the {image.width}x{image.height} "
                            "image; configure a VQA model for questions about what a picture shows "
                            "([backends.vlm] or [backends.hf_vqa], see docs/adapters.md)")
        listing = numbered_lines(lines, image.root_size)
        reply = complete(self.llm(), answer_messages(question, listing, context), max_tokens=ANSWER_TOKENS,
                         stop=["\n"])
        answer = clean_answer(reply)
        if not answer:
            raise ToolError(f"textcot_offline ask: {self.spec} gave an empty answer to {question!r}")
        return answer


def backends() -> list[Backend]:
    return [OfflineCaption(), OfflineLocate(), OfflineAsk()]
