"""TextCoT's three stages by a vision LLM behind an OpenAI-compatible chat API (vLLM, Ollama, llama.cpp
server with a multimodal projector, LM Studio, hosted APIs): images go as ``image_url`` parts.

- ``caption``: a one-sentence description of the whole image (TextCoT's image overview).
- ``locate``: the question, and a request for the text that answers it with its bounding box as
  JSON in fractions of the image's width and height (TextCoT's coarse localization). The reply is
  read by :func:`parse_box`, which takes normalised boxes ``[0..1]``, Qwen-VL style 0-1000 integer
  boxes and pixel boxes; a reply with no usable box is an error quoting what was received (the
  published TextCoT parser silently used the whole image for the last two forms and for garbage).
- ``ask``: the crop, "this is a crop of <overview>" as context, the question and a request for a
  short answer (TextCoT's answer stage); with ``choices`` the reply must be one of them.

Settings (``[backends.vlm]`` in vistrace.toml, or ``VISTRACE_VLM_URL`` etc.)::

    [backends.vlm]
    url = "http://127.0.0.1:8000/v1"   # the base URL (where /chat/completions is served)
    model = "Qwen2-VL-7B-Instruct"
    timeout = 120          # optional, seconds
    box_format = "auto"    # optional: auto, normalized, thousand (0-1000), pixel
    max_side = 1344        # optional: larger images are scaled down before sending

The API key comes from ``$VISTRACE_LLM_API_KEY`` or ``$OPENAI_API_KEY`` (none: no header). Unset
``url``/``model`` make the backends unavailable with the settings that fix it; nothing falls back.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

from vistrace.errors import BackendUnavailable, ToolError
from vistrace.settings import backend_settings, declare_table, env_name
from vistrace.values import Box, Detections, Image

from ..backends import Availability, Backend

SETTINGS_NAME = "vlm"
declare_table(SETTINGS_NAME)
PROMPT_VERSION = "textcot-1"
BOX_FORMATS = ("auto", "normalized", "thousand", "pixel")
DEFAULT_MAX_SIDE = 1344
CAPTION_TOKENS = 80
LOCATE_TOKENS = 120
ANSWER_TOKENS = 40
FIX = (f"set {env_name(SETTINGS_NAME, 'url')}=http://HOST:PORT/v1 and {env_name(SETTINGS_NAME, 'model')}=MODEL, "
       "or [backends.vlm] url/model in vistrace.toml (docs/adapters.md)")


# --- prompts (pure) -------------------------------------------------------------------------------

def caption_prompt() -> str:
    return "Describe this image in one sentence: say what kind of image it is and what it mainly shows."


def locate_prompt(question: str, context: str = "") -> str:
    seen = f"The image shows: {context.strip()}\n" if context.strip() else ""
    return (f"{seen}Question: {question.strip()}\n"
            "Do not answer yet. Find the text in the image that answers the question and reply with JSON only, "
            'in this form: {"text": "<the answering text>", "bbox": [x1, y1, x2, y2]}, where the box encloses '
            "that text and its corners are fractions of the image width and height (decimals from 0 to 1).")


def answer_prompt(question: str, context: str = "", is_crop: bool = False, choices: list[str] | None = None) -> str:
    lead = ""
    if is_crop:
        lead = "This picture is a zoomed-in crop of a larger image"
        lead += f", which shows: {context.strip()}\n" if context.strip() else ".\n"
    elif context.strip():
        lead = f"About this image: {context.strip()}\n"
    how = (f"Answer with exactly one of: {', '.join(choices)}." if choices else
           "Answer with a single word or a short phrase, copying any text exactly as it is written.")
    return f"{lead}Question: {question.strip()}\n{how}"


# --- the box parser (pure) ----------------------------------------------------------------------------

_NUMBER = r"-?\d+(?:\.\d+)?"
_FOUR = re.compile(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]")
_BOX_KEYS = ("bbox", "box", "bbox_2d", "bounding_box", "coordinates")


def _json_objects(text: str) -> list[Any]:
    """Every JSON value that parses from a ``{`` or ``[`` in ``text`` (code fences and prose around ignored)."""
    decoder = json.JSONDecoder()
    found = []
    i = 0
    while i < len(text):
        if text[i] in "{[":
            try:
                value, end = decoder.raw_decode(text, i)
            except ValueError:
                i += 1
                continue
            found.append(value)
            i = end
        else:
            i += 1
    return found


def _four_numbers(value: Any) -> list[float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return [float(v) for v in value]
    if isinstance(value, dict):
        keys = ("x1", "y1", "x2", "y2")
        if all(k in value for k in keys):
            return _four_numbers([value[k] for k in keys])
    return None


def _find_box(value: Any) -> tuple[list[float] | None, str]:
    """(the box numbers, the answering text) from a parsed JSON value, searching nested objects and lists."""
    if isinstance(value, dict):
        text = next((str(value[k]) for k in ("text", "answer", "label") if isinstance(value.get(k), (str, int, float))),
                    "")
        for k in _BOX_KEYS:
            if k in value:
                nums = _four_numbers(value[k])
                if nums is not None:
                    return nums, text
        nums = _four_numbers(value)
        if nums is not None:
            return nums, text
        for v in value.values():
            nums, inner = _find_box(v)
            if nums is not None:
                return nums, inner or text
        return None, text
    if isinstance(value, list):
        nums = _four_numbers(value)
        if nums is not None:
            return nums, ""
        for v in value:
            nums, text = _find_box(v)
            if nums is not None:
                return nums, text
    return None, ""


def box_form(numbers: list[float], width: int, height: int, form: str = "auto") -> str:
    """Which scale four box numbers are on: 'normalized' (0..1), 'thousand' (0..1000) or 'pixel'.

    ``auto``: every number within [0, 1] is normalised; else any number above 1000 means pixels;
    else 0-1000 (the Qwen-VL convention, what models trained on it answer when asked for fractions).
    A model that answers in pixels on images of at most 1000 px needs ``box_format = "pixel"``.
    """
    if form not in BOX_FORMATS:
        raise ToolError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {form!r}")
    if form != "auto":
        return form
    if all(0.0 <= v <= 1.0 for v in numbers):
        return "normalized"
    if any(v > 1000 for v in numbers):
        return "pixel"
    return "thousand"


def parse_box(reply: str, width: int, height: int, form: str = "auto") -> tuple[Box, str, str]:
    """The box a vision LLM's reply gives, in pixels of the ``width`` x ``height`` image it saw.

    Returns (box, the answering text if the reply names it, the box form read). The box is the first
    ``bbox``-like member of a JSON object (``bbox``, ``box``, ``bbox_2d``, ``bounding_box``, or
    ``x1..y2`` keys), else the first ``[a, b, c, d]`` in the text. Raises ToolError quoting the reply
    when there is no box, when its corners are out of order, or when it lies outside the image.
    """
    text = str(reply)
    shown = text.strip()[:200]
    numbers, answer = None, ""
    for value in _json_objects(text):
        numbers, answer = _find_box(value)
        if numbers is not None:
            break
    if numbers is None:
        m = _FOUR.search(text)
        if m:
            numbers = [float(g) for g in m.groups()]
    if numbers is None:
        raise ToolError(f"locate: the vision LLM's reply holds no bounding box [x1, y1, x2, y2]; received {shown!r}")
    used = box_form(numbers, width, height, form)
    scale = {"normalized": (width, height), "thousand": (width / 1000, height / 1000), "pixel": (1.0, 1.0)}[used]
    x1, y1, x2, y2 = numbers[0] * scale[0], numbers[1] * scale[1], numbers[2] * scale[0], numbers[3] * scale[1]
    if x2 <= x1 or y2 <= y1:
        raise ToolError(f"locate: the box {numbers} ({used}) has its corners out of order or no area; "
                        f"received {shown!r}")
    limit = 1.02  # rounding by the model may overshoot the edge a little
    if x1 < 0 or y1 < 0 or x2 > width * limit or y2 > height * limit:
        raise ToolError(f"locate: the box {numbers} read as {used} lies outside the {width}x{height} image; "
                        f"received {shown!r} (set [backends.vlm] box_format if the model uses another scale)")
    return Box(x1, y1, min(x2, width), min(y2, height), label=answer), answer, used


def choose(reply: str, choices: list[str]) -> str:
    """The choice a reply names (case and surrounding punctuation ignored); ToolError quoting it otherwise."""
    said = re.sub(r"[^\w\s]", " ", str(reply)).lower().split()
    for c in choices:
        if c.lower().split() == said or (len(said) > 0 and c.lower() == said[0]):
            return c
    raise ToolError(f"ask: the vision LLM answered {str(reply).strip()[:120]!r}, which is none of the choices "
                    f"{', '.join(choices)}")


# --- the backends -------------------------------------------------------------------------------------

def data_url(image: Image, max_side: int) -> str:
    """The image as a JPEG ``data:`` URL, scaled down so its longer side is at most ``max_side``."""
    pil = image.pil.convert("RGB")
    if max(pil.size) > max_side:
        f = max_side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * f)), max(1, round(pil.height * f))))
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_CLIENTS: dict[tuple, Any] = {}


class _Vlm(Backend):
    """Shared by the three vision-LLM backends: settings, the client, one chat call with one image."""

    name = "vlm"
    version = PROMPT_VERSION
    priority = 30  # like the other adapters: a model the user configured wins over the offline default

    def settings(self):
        return backend_settings(SETTINGS_NAME)

    @property
    def model(self) -> str:  # type: ignore[override]
        s = self.settings()
        return f"{s.get('model') or 'unconfigured'} @ {s.get('url') or '-'}"

    def availability(self) -> Availability:
        s = self.settings()
        missing = [k for k in ("url", "model") if not str(s.get(k) or "").strip()]
        if missing:
            return Availability(False, f"vision LLM not configured: {' and '.join(missing)} unset", FIX)
        url = str(s.get("url")).strip()
        if not url.startswith(("http://", "https://")):
            return Availability(False, f"[backends.vlm] url = {url!r} (from {s.where('url')}) must start with "
                                       "http:// or https://", FIX)
        form = str(s.get("box_format") or "auto")
        if form not in BOX_FORMATS:
            return Availability(False, f"[backends.vlm] box_format = {form!r} must be one of {', '.join(BOX_FORMATS)}",
                                f"{env_name(SETTINGS_NAME, 'box_format')}=auto")
        return Availability(True, f"vision LLM {s.get('model')} at {url}")

    def _number(self, key: str, default: float) -> float:
        s = self.settings()
        raw = s.get(key)
        if raw in (None, ""):
            return default
        try:
            value = float(str(raw).strip())
        except ValueError:
            value = 0
        if value <= 0:
            raise BackendUnavailable(f"vlm: setting '{key}' = {raw!r} (from {s.where(key)}) must be a positive number",
                                     fix=f"{env_name(SETTINGS_NAME, key)}={default:g}")
        return value

    def client(self):
        a = self.availability()
        if not a.ok:
            raise BackendUnavailable(f"vlm: {a.reason}", fix=a.fix)
        s = self.settings()
        key = (str(s.get("url")).strip(), str(s.get("model")).strip(), self._number("timeout", 120))
        if key not in _CLIENTS:
            from vistrace.agent.llm import OpenAICompatible

            _CLIENTS[key] = OpenAICompatible(key[0], key[1], timeout=key[2], vision=True, grammar=False)
        return _CLIENTS[key]

    def chat(self, image: Image, prompt: str, max_tokens: int) -> str:
        from vistrace.agent.llm import Message

        url = data_url(image, int(self._number("max_side", DEFAULT_MAX_SIDE)))
        return self.client().complete([Message("user", prompt, images=(url,))], max_tokens=max_tokens).text

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, f"vlm: the vision LLM {self.settings().get('model')} answers {self.tool} from the pixels"


class VlmCaption(_Vlm):
    tool = "caption"

    def run(self, image: Image, **_: Any) -> str:
        text = self.chat(image, caption_prompt(), CAPTION_TOKENS).strip()
        if not text:
            raise ToolError(f"caption: the vision LLM {self.settings().get('model')} returned an empty description")
        return text


class VlmLocate(_Vlm):
    tool = "locate"

    def run(self, image: Image, question: str, context: str = "", **_: Any) -> Detections:
        reply = self.chat(image, locate_prompt(question, context), LOCATE_TOKENS)
        box, _, _ = parse_box(reply, image.width, image.height, str(self.settings().get("box_format") or "auto"))
        return Detections([box], query=question, image_size=image.size)


class VlmAsk(_Vlm):
    tool = "ask"

    def run(self, image: Image, question: str, choices: list[str] | None = None, context: str = "",
            **_: Any) -> str:
        reply = self.chat(image, answer_prompt(question, context, image.is_crop, choices), ANSWER_TOKENS).strip()
        if choices:
            return choose(reply, list(choices))
        if not reply:
            raise ToolError(f"ask: the vision LLM {self.settings().get('model')} returned an empty answer")
        return reply.splitlines()[0].strip()


def backends() -> list[Backend]:
    return [VlmCaption(), VlmLocate(), VlmAsk()]
