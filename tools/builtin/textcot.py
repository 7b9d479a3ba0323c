"""TextCoT's tools (Luan et al., "TextCoT: Zoom In for Enhanced Multimodal Text-Rich Image Understanding").

TextCoT answers a question about a text-rich image in three stages: an overview (``caption``), a
coarse localization of the text that answers the question (``locate``, here), and a zoomed
observation: ``zoom`` (tools/builtin/image_ops.py, TextCoT's crop rule) then ``ask`` on the crop with
the overview as ``context``. The program is ``programs/library/textcot.vp``.

Backend contract of ``locate``: ``run(image=Image, question=str) -> Detections`` holding one box in
the given image's own pixels, labelled with the text the backend found there (plus ``context=str``
and ``ctx=ToolContext`` when its ``run`` names them). Backends: ``vlm`` (a vision LLM asked for a
normalised box, tools/adapters/vlm.py) and ``textcot_offline`` (the OCR lines an LLM picks,
tools/experts/textcot_offline.py). A backend that finds nothing raises; it never returns the whole
image in place of an answer.
"""

from __future__ import annotations

from typing import Any

from vistrace.errors import ToolArgumentError, ToolError
from vistrace.values import Box, Detections, Image

from ..backends import Backend
from ..registry import ToolContext, tool
from .experts import backend_extras


def union_box(boxes: list[Box], label: str = "", score: float | None = None) -> Box:
    """The smallest box holding every box of ``boxes`` (at least one), with ``label`` and ``score``."""
    if not boxes:
        raise ToolError("union_box needs at least one box")
    return Box(min(b.x1 for b in boxes), min(b.y1 for b in boxes), max(b.x2 for b in boxes),
               max(b.y2 for b in boxes), label=label, score=score)


def _check_locate(args: dict[str, Any]) -> None:
    if not str(args.get("question", "")).strip():
        raise ToolArgumentError("locate needs a non-empty question, e.g. 'What is the total?'")


@tool(category="expert", expert=True, precheck=_check_locate)
def locate(image: Image, question: str, context: str = "", ctx: ToolContext = None,
           backend: Backend = None) -> Detections:
    """Find where the text that answers a question is written: one box in root-image pixels.

    TextCoT's coarse localization: the box is meant for ``zoom``, which squares and enlarges it.
    The box is labelled with the text the backend read or expected there.

    Args:
        image: The image (or a crop of one) to search, e.g. a scanned receipt.
        question: The question whose answer is sought, e.g. 'What is the total?'.
        context: Optional description of the whole image (its caption), for backends that use it.

    Returns:
        One box around the answering text, in root-image pixels.
    """
    _check_locate({"question": question})
    extra = backend_extras(backend, ctx, context=context)
    found = backend.run(image=image, question=question, **extra)
    if not isinstance(found, Detections):
        raise ToolError(f"backend '{backend.name}' of locate returned {type(found).__name__}, expected Detections")
    if len(found) != 1:
        raise ToolError(f"backend '{backend.name}' of locate returned {len(found)} boxes, expected exactly one")
    return Detections(image.to_root(found), query=question, image_size=image.root_size)


TOOLS = (locate,)
