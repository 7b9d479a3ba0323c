"""Overlay pictures for the trace: what each step saw and found, drawn on the root image.

For every step with a drawable output, :func:`render_artifacts` writes PNGs into
``run_dir/artifacts/`` and lists them (paths relative to the run folder) in the step record:

- boxes, detections, OCR lines, masks, answers with evidence: drawn on the step's root image;
- an image output: the image itself, and for a crop also its region outlined on the root image;
- a depth map: its own picture (bright = near);
- a point cloud: its points seen from above-left of the camera, coloured by depth; a mesh: its
  rendered preview;
- an exported mesh file (:class:`~vistrace.values.MeshFile`): the file itself, written to
  ``run_dir/exports/NAME.FORMAT`` (``NAME_stepNNN.FORMAT`` when two steps export the same name);
- scalars and anything else: no picture.

The root image of a step is found from the first image among its arguments: an image that is not a
crop is its own root; a crop's root is the known root image (run inputs first, then images produced
by steps) of the crop's ``root_size``, checked against the crop's pixels when several have that
size.  When no root is known, the crop is pasted at its place on a grey canvas of the root's size.
Every artifact is downscaled so its long side is at most :data:`MAX_SIDE` pixels.  A value that
cannot be drawn is skipped; drawing never fails a run.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_SIDE = 768
MAX_ROOT_PIXELS = 64_000_000   # never build a fallback canvas larger than this
MAX_PARTS = 64                 # at most this many values of a list output are drawn


def _iter_images(value: Any, depth: int = 0):
    """Every Image inside a value (lists, tuples and dict values searched, a few levels deep)."""
    from ..values import Image

    if isinstance(value, Image):
        yield value
    elif depth < 3 and isinstance(value, (list, tuple)):
        for v in value[:MAX_PARTS]:
            yield from _iter_images(v, depth + 1)
    elif depth < 3 and isinstance(value, dict):
        for v in list(value.values())[:MAX_PARTS]:
            yield from _iter_images(v, depth + 1)


def downscale(pil, max_side: int = MAX_SIDE):
    """A copy of ``pil`` whose long side is at most ``max_side`` (aspect kept; never enlarged)."""
    from PIL import Image as PILImage

    w, h = pil.size
    long_side = max(w, h)
    if long_side <= max_side:
        return pil.copy()
    f = max_side / long_side
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return pil.resize(size, PILImage.Resampling.LANCZOS)


class RootFinder:
    """Finds the full (root) picture behind an image, among the images a run has seen."""

    def __init__(self) -> None:
        self.roots: list[Any] = []          # non-crop Images, inputs first
        self._shas: set[str] = set()

    def add(self, value: Any) -> None:
        for im in _iter_images(value):
            if not im.is_crop and im.sha256 not in self._shas:
                self._shas.add(im.sha256)
                self.roots.append(im)

    def root_of(self, image) -> Any:
        """The root Image of ``image`` (itself when not a crop), or None when unknown."""
        if not image.is_crop:
            return image
        size = tuple(int(v) for v in image.root_size)
        candidates = [r for r in self.roots if r.size == size]
        if len(candidates) <= 1:
            return candidates[0] if candidates else None
        for r in candidates:
            if _same_pixels(r, image):
                return r
        return candidates[0]

    def canvas_for(self, image):
        """An RGB PIL canvas in root-image pixels for ``image`` (the root, or the crop placed on grey)."""
        from PIL import Image as PILImage

        root = self.root_of(image)
        if root is not None:
            return root.pil.convert("RGB")
        w, h = (int(v) for v in image.root_size)
        if w <= 0 or h <= 0 or w * h > MAX_ROOT_PIXELS:
            return None
        canvas = PILImage.new("RGB", (w, h), (128, 128, 128))
        r = image.region()
        x1, y1 = round(r.x1), round(r.y1)
        pw, ph = max(1, round(r.x2) - x1), max(1, round(r.y2) - y1)
        canvas.paste(image.pil.convert("RGB").resize((pw, ph)), (x1, y1))
        return canvas


def _same_pixels(root, crop) -> bool:
    """Whether ``crop`` (scale 1) was cut out of ``root``; zoomed crops compare approximately."""
    try:
        import numpy as np

        r = crop.region()
        box = (round(r.x1), round(r.y1), round(r.x2), round(r.y2))
        piece = root.pil.convert("RGB").crop(box)
        if piece.size != crop.size:
            piece = piece.resize(crop.size)
            a = np.asarray(piece, dtype=np.int16)
            b = np.asarray(crop.pil.convert("RGB"), dtype=np.int16)
            return float(np.abs(a - b).mean()) < 12.0
        return piece.tobytes() == crop.pil.convert("RGB").tobytes()
    except Exception:
        return False


def _on_root(value: Any) -> bool:
    """Values drawn onto the root picture."""
    from ..values import Answer, Box, Detections, Image, Keypoints, Mask, TextLine, TextLines

    if isinstance(value, Answer):  # evidence boxes, or a verdict whose explanation is drawn as a banner
        return bool(value.boxes) or (isinstance(value.value, bool) and bool(value.explanation))
    if isinstance(value, Image):
        return value.is_crop
    return isinstance(value, (Box, Detections, Keypoints, Mask, TextLine, TextLines))


def _draw_on(canvas, value: Any):
    from ..values import TextLine, TextLines

    if isinstance(value, TextLine):
        return TextLines([value]).draw(canvas)
    return value.draw(canvas)


def _pick_canvas(finder: RootFinder, args: dict[str, Any], value: Any):
    """The root canvas for a step: from its first image argument, else the best known root."""
    for im in _iter_images(args):
        canvas = finder.canvas_for(im)
        if canvas is not None:
            return canvas
    for im in _iter_images(value):  # e.g. a crop output whose arguments held no image
        if im.is_crop:
            canvas = finder.canvas_for(im)
            if canvas is not None:
                return canvas
    size = getattr(value, "image_size", None)
    if size:
        for r in finder.roots:
            if r.size == tuple(size):
                return r.pil.convert("RGB")
    return finder.roots[0].pil.convert("RGB") if finder.roots else None


def step_pictures(finder: RootFinder, args: dict[str, Any], value: Any) -> list[tuple[str, Any]]:
    """The pictures for one step: ``[(suffix, PIL image)]`` (suffix '' for the main one)."""
    from ..values import DepthMap, Image, Mesh, PointCloud

    if isinstance(value, (DepthMap, PointCloud, Mesh)):
        return [("", value.draw())]
    if isinstance(value, Image):
        pics = [("", value.pil.convert("RGB"))]
        if value.is_crop:
            canvas = finder.canvas_for(value)
            if canvas is not None:
                pics.append(("_region", value.draw(canvas)))
        return pics
    parts: list[Any]
    if _on_root(value):
        parts = [value]
    elif isinstance(value, (list, tuple)) and value and all(_on_root(v) for v in value[:MAX_PARTS]):
        parts = list(value[:MAX_PARTS])
    else:
        return []
    canvas = _pick_canvas(finder, args, value)
    if canvas is None:
        return []
    for part in parts:
        canvas = _draw_on(canvas, part)
    return [("", canvas)]


def render_artifacts(recorder, run_dir: str | Path, max_side: int = MAX_SIDE) -> None:
    """Draw every step's overlay PNGs into ``run_dir/artifacts`` and list them in ``step.artifacts``.

    Paths are relative to ``run_dir`` (``artifacts/step003.png``, ``artifacts/step003_region.png``).
    Steps whose value cannot be drawn get no artifact; nothing here raises for an odd value.
    """
    from ..values import MeshFile

    run_dir = Path(run_dir)
    out_dir = run_dir / "artifacts"
    exported: set[str] = set()
    finder = RootFinder()
    for value in recorder.input_values.values():
        finder.add(value)
    for rec in sorted(recorder.trace.steps, key=lambda s: s.id):
        value = recorder.values.get(rec.id)
        args = recorder.arg_values.get(rec.id, {})
        rec.artifacts = []
        try:
            finder.add(args)
            if rec.error is not None or rec.id not in recorder.values:
                continue
            if isinstance(value, MeshFile):
                _save_file(run_dir, rec, value, exported)
                continue
            pictures = step_pictures(finder, args, value)
            finder.add(value)
        except Exception as exc:
            log.debug("no artifact for step %s: %s: %s", rec.id, type(exc).__name__, exc)
            continue
        for suffix, pil in pictures:
            name = f"step{rec.id:03d}{suffix}.png"
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                downscale(pil, max_side).save(out_dir / name, format="PNG", compress_level=3)
            except Exception as exc:
                log.debug("cannot save artifact %s: %s", name, exc)
                continue
            rec.artifacts.append(f"artifacts/{name}")


def _save_file(run_dir: Path, rec, value, exported: set[str]) -> None:
    """Write an exported file to ``run_dir/exports/`` and list it among the step's artifacts."""
    name = value.filename
    if Path(name).name != name or name.startswith(".") or "\\" in name:  # never outside exports/ (export_mesh
        name = f"export_step{rec.id:03d}.{value.format}"                # refuses such names; values made elsewhere may not)
    if name in exported:
        name = f"{value.name}_step{rec.id:03d}.{value.format}"
    try:
        (run_dir / "exports").mkdir(parents=True, exist_ok=True)
        (run_dir / "exports" / name).write_bytes(value.data)
    except OSError as exc:
        log.debug("cannot save export %s: %s", name, exc)
        return
    exported.add(name)
    rec.artifacts.append(f"exports/{name}")
