"""Image generation: ``generate`` (an expert: diffusers text-to-image, GLIGEN for layouts) and
``layout_sketch`` (no weights: the VPGen layout drawn as labelled boxes, and said to be a sketch).

Backend contract for ``generate``: ``run(prompt=str, layout=Detections | None, width=int,
height=int, seed=int, steps=int, guidance=float) -> Image`` of exactly ``width`` x ``height``;
``layout`` boxes are in the output image's pixels, one phrase (label) per box.
"""

from __future__ import annotations

from vistrace.errors import ToolArgumentError, ToolError
from vistrace.values import Detections, Image

from ..backends import Backend
from ..registry import tool

GENERATE_HINT = ("text-to-image needs diffusion weights you bring (see docs/adapters.md); "
                 "layout_sketch(layout, width, height) draws a layout without any")
MAX_SIDE = 2048


def _check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not 64 <= v <= MAX_SIDE:
            raise ToolArgumentError(f"{name} must be between 64 and {MAX_SIDE} pixels, got {v}")


def _check_layout(layout: Detections | None, width: int, height: int) -> None:
    if layout is None:
        return
    if not len(layout):
        raise ToolArgumentError("layout is empty: give at least one labelled box, or no layout")
    for b in layout:
        if not b.label:
            raise ToolArgumentError(f"every layout box needs a label (the phrase to draw there); {b.summary()} has none")
        if b.x2 <= 0 or b.y2 <= 0 or b.x1 >= width or b.y1 >= height:
            raise ToolArgumentError(f"layout box {b.summary()} lies outside the {width}x{height} canvas")


def _check_generate(args: dict) -> None:
    if not args["prompt"].strip():
        raise ToolArgumentError("generate needs a non-empty prompt")
    _check_size(args["width"], args["height"])
    _check_layout(args["layout"], args["width"], args["height"])
    if not 1 <= args["steps"] <= 500:
        raise ToolArgumentError(f"steps must be between 1 and 500, got {args['steps']}")


@tool(category="generation", expert=True, unavailable_hint=GENERATE_HINT, precheck=_check_generate)
def generate(prompt: str, layout: Detections | None = None, width: int = 512, height: int = 512, seed: int = 0,
             steps: int = 30, guidance: float = 7.5, backend: Backend = None) -> Image:
    """Generate an image from a text prompt, optionally placing objects in a layout of labelled boxes.

    Args:
        prompt: What the image shows, e.g. 'a cat and a dog on a sofa'.
        layout: Optional labelled boxes in the output's pixels (GLIGEN grounds each label in its box).
        width: Output width in pixels.
        height: Output height in pixels.
        seed: Random seed; the same seed, weights and settings give the same image.
        steps: Denoising steps.
        guidance: Classifier-free guidance scale.

    Returns:
        The generated image (its source names the model and the seed).
    """
    _check_generate({"prompt": prompt, "layout": layout, "width": width, "height": height, "steps": steps})
    out = backend.run(prompt=prompt, layout=layout, width=width, height=height, seed=seed, steps=steps,
                      guidance=guidance)
    if not isinstance(out, Image):
        raise ToolError(f"backend '{backend.name}' of generate returned {type(out).__name__}, expected Image")
    if out.size != (width, height):
        raise ToolError(f"backend '{backend.name}' of generate returned {out.width}x{out.height}, "
                        f"asked for {width}x{height}")
    return out


@tool(category="generation")
def layout_sketch(layout: Detections, width: int = 512, height: int = 512, prompt: str = "") -> Image:
    """Draw a layout (labelled boxes) on a blank canvas: a layout sketch, not a generated image.

    Args:
        layout: The labelled boxes, in the canvas' pixels.
        width: Canvas width in pixels.
        height: Canvas height in pixels.
        prompt: Optional prompt, written at the top of the canvas.

    Returns:
        The sketch; its source says plainly that it is a layout sketch.
    """
    from PIL import Image as PILImage, ImageDraw

    from vistrace.values.draw import color_for, font

    _check_size(width, height)
    _check_layout(layout, width, height)
    canvas = PILImage.new("RGB", (width, height), (245, 245, 240))
    d = ImageDraw.Draw(canvas)
    f = font(max(11, min(width, height) // 32))
    for b in layout:
        color = color_for(b.label)
        d.rectangle([b.x1, b.y1, b.x2 - 1, b.y2 - 1], outline=color, width=max(2, min(width, height) // 160))
        d.text((b.x1 + 4, b.y1 + 2), b.label, fill=color, font=f)
    note = "LAYOUT SKETCH - not a generated image"
    d.text((6, height - f.size - 6), note, fill=(90, 90, 90), font=f)
    if prompt:
        d.text((6, 4), prompt[:120], fill=(40, 40, 40), font=f)
    return Image(canvas, source=f"layout sketch (not a generated image) of {len(layout)} boxes"
                               + (f" for prompt {prompt[:60]!r}" if prompt else ""))


TOOLS = (generate, layout_sketch)
