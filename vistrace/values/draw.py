"""Small drawing helpers shared by the value types (boxes, labels, masks on a PIL canvas)."""

from __future__ import annotations

PALETTE = [
    (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128),
]


def color_for(key: str) -> tuple[int, int, int]:
    """A stable colour per label (same label, same colour in every picture)."""
    h = 0
    for ch in key:
        h = (h * 31 + ord(ch)) & 0xFFFFFFFF
    return PALETTE[h % len(PALETTE)]


def rgb_canvas(canvas):
    return canvas.convert("RGB") if canvas.mode != "RGB" else canvas.copy()


def draw_box(canvas, xyxy, label: str = "", color=None, width: int | None = None):
    """Draw one rectangle with an optional caption; returns the same (mutated) canvas."""
    from PIL import ImageDraw

    color = color or color_for(label or "box")
    w = width or max(2, round(min(canvas.size) / 200))
    d = ImageDraw.Draw(canvas)
    x1, y1, x2, y2 = xyxy
    d.rectangle([x1, y1, x2, y2], outline=color, width=w)
    if label:
        tx, ty = x1 + w, max(0, y1 - 12)
        bbox = d.textbbox((tx, ty), label)
        d.rectangle(bbox, fill=color)
        d.text((tx, ty), label, fill=(255, 255, 255))
    return canvas


def draw_banner(canvas, text: str, color=(40, 40, 40), max_chars: int = 110):
    """A coloured strip across the top of the canvas with one line of white text; returns the canvas."""
    from PIL import ImageDraw

    d = ImageDraw.Draw(canvas)
    f = font(max(11, min(canvas.size) // 36))
    line = text if len(text) <= max_chars else text[:max_chars - 1] + "…"
    height = f.size + 8
    d.rectangle([0, 0, canvas.size[0], height], fill=color)
    d.text((4, 3), line, fill=(255, 255, 255), font=f)
    return canvas


def font(size: int = 14):
    """PIL's bundled scalable font at ``size`` pixels (no system fonts needed)."""
    from PIL import ImageFont

    return ImageFont.load_default(size=size)
