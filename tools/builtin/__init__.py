"""The built-in tools and the aliases that let VisProg and VPEval programs run unchanged.

``register_builtin`` adds every tool explicitly (no import side effects); ``default_registry()``
in :mod:`vistrace.tools.registry` calls it. VisProg's EVAL and RESULT are not tools: the sandbox
handles them.
"""

from __future__ import annotations

from ..registry import Registry
from . import basic, experts, generation, geometry, image_ops, relations, stereo, textcot, vpeval, vpgen

MODULES = (image_ops, relations, experts, vpeval, basic, stereo, generation, textcot, geometry, vpgen)

# (alias, tool, renames, presets)
VISPROG_ALIASES: tuple[tuple[str, str, dict, dict], ...] = (
    ("LOC", "loc", {}, {}),
    ("COUNT", "count", {"box": "objects"}, {}),
    ("CROP", "crop", {}, {"expand": 1.5}),
    ("CROP_LEFTOF", "crop_left_of", {}, {}),
    ("CROP_RIGHTOF", "crop_right_of", {}, {}),
    ("CROP_ABOVE", "crop_above", {}, {}),
    ("CROP_BELOW", "crop_below", {}, {}),
    ("VQA", "ask", {}, {}),
)

VPEVAL_ALIASES: tuple[tuple[str, str, dict, dict], ...] = (
    ("objDet", "detect", {}, {}),
    ("objectEval", "object_eval", {}, {}),
    ("countEval", "count_eval", {}, {}),
    ("spatialEval", "spatial_eval", {}, {}),
    ("scaleEval", "scale_eval", {}, {}),
    ("textEval", "text_eval", {}, {}),
    ("vqa", "vqa_eval", {}, {}),
)


def register_builtin(reg: Registry) -> None:
    """Add every built-in tool to ``reg`` and register the VisProg and VPEval aliases."""
    for module in MODULES:
        for t in module.TOOLS:
            reg.add(t)
    for style, aliases in (("visprog", VISPROG_ALIASES), ("vpeval", VPEVAL_ALIASES)):
        for name, target, renames, presets in aliases:
            reg.alias(name, target, renames=renames, presets=presets, style=style)


__all__ = ["register_builtin", "VISPROG_ALIASES", "VPEVAL_ALIASES"]
