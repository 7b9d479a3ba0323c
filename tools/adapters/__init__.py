"""Adapters for the weights users bring: ultralytics YOLO, segment-anything, Hugging Face transformers
(OWLv2, Grounding DINO, DPT, Depth-Anything, BLIP-style VQA/captioning) and diffusers (text-to-image,
GLIGEN layouts).

Each adapter is a backend that is available once its package is installed (``pip install
'vistrace[yolo|sam|hf|gen]'``) and its weights are configured in ``vistrace.toml`` or by an
environment variable (see :mod:`vistrace.settings`); ``vistrace doctor`` shows what is missing.
``register_adapters(registry)`` adds them all explicitly. Importing this package is light: torch,
ultralytics, transformers and diffusers load when a model is first used.
"""

from __future__ import annotations

import importlib

ADAPTER_MODULES = ("yolo", "sam", "hf_detect", "hf_depth", "hf_vlm", "vlm", "diffusion")


def register_adapters(reg) -> None:
    """Add every adapter backend (configured or not: unconfigured ones report what they need)."""
    for name in ADAPTER_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        for backend in module.backends():
            reg.add_backend(backend)


__all__ = ["ADAPTER_MODULES", "register_adapters"]
