"""Reading images from files and bytes: the one loader every way into vistrace goes through.

:func:`load` gives upright 8-bit pixels (PIL mode ``L``, ``RGB`` or ``RGBA``) and notes that say what
was done to get them (EXIF orientation applied, first frame of an animation used, 16-bit scaled to
8-bit...). Anything it cannot read faithfully is an :class:`~vistrace.errors.InputError` naming the
input and what was expected; a picture over the pixel limit is :class:`ImageTooLarge` (also an
``InputError``), refused from the header alone, before any pixel is decoded. docs/images.md has the
table of what is accepted, converted and refused.

The pixel limit is :func:`max_pixels`: ``$VISTRACE_MAX_PIXELS``, else ``[images] max_pixels`` of the
settings file (see :mod:`vistrace.settings`), else :data:`DEFAULT_MAX_PIXELS`. PIL's own
``Image.MAX_IMAGE_PIXELS`` is kept equal to it, so code that opens images with PIL directly gets the
same bound.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError

log = logging.getLogger("vistrace.images")

# the PIL plugins a file may be read with; everything else (EPS runs Ghostscript, PDF, PSD, ICO...) is refused
FORMATS = ("PNG", "JPEG", "MPO", "GIF", "TIFF", "BMP", "WEBP", "PPM")
EXPECTED = "a PNG, JPEG, GIF, TIFF, BMP, WebP or PPM/PGM image file"
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "VISTRACE_MAX_PIXELS"
HEAD = 4096  # bytes read to tell what a file is

_OPEN_LOCK = threading.Lock()  # PIL.Image.MAX_IMAGE_PIXELS and the warning filter are process-wide

ORIENTATIONS = {2: "mirrored left-right", 3: "rotated 180°", 4: "mirrored top-bottom",
                5: "mirrored along the main diagonal", 6: "rotated 90° clockwise",
                7: "mirrored along the anti-diagonal", 8: "rotated 90° counter-clockwise"}


class ImageTooLarge(InputError):
    """An image over the pixel limit (refused from its header, before decoding)."""

    def __init__(self, message: str, *, pixels: int | None, limit: int, **kw):
        super().__init__(message, **kw)
        self.pixels = pixels
        self.limit = limit


@dataclass(frozen=True)
class Loaded:
    """Decoded pixels plus what was done to them."""

    pil: Any                      # PIL image, mode L, RGB or RGBA, upright
    notes: tuple[str, ...]        # e.g. ("EXIF orientation 6 applied (rotated 90° clockwise)",)
    format: str                   # PIL's format name: PNG, JPEG, GIF...
    frames: int                   # frames (pages) in the file; only the first is used
    stored_size: tuple[int, int]  # width, height as stored (before EXIF orientation)


# --- the pixel limit ---------------------------------------------------------------------------

def max_pixels() -> int:
    """The largest image (width x height) vistrace decodes: env, then settings file, then the default."""
    raw: Any = os.environ.get(MAX_PIXELS_ENV, "").strip()
    where = f"the environment variable {MAX_PIXELS_ENV}"
    if not raw:
        from ..settings import table

        values, path = table("images")
        if "max_pixels" not in values:
            return DEFAULT_MAX_PIXELS
        raw, where = values["max_pixels"], f"[images] max_pixels in {path}"
    return _positive_int(raw, where)


def _positive_int(raw: Any, where: str) -> int:
    n: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        n = raw
    elif isinstance(raw, float) and raw.is_integer():
        n = int(raw)
    elif isinstance(raw, str):
        text = raw.strip().replace("_", "")
        try:
            n = int(text)
        except ValueError:
            try:
                f = float(text)
                n = int(f) if f.is_integer() else None
            except ValueError:
                n = None
    if n is None or n < 1:
        raise InputError(f"{where} must be a positive whole number of pixels, got {raw!r}",
                         hint="e.g. 100000000 for 100 megapixels")
    return n


def _limit_hint() -> str:
    return (f"downscale the image, or raise the limit with {MAX_PIXELS_ENV}=N or [images] max_pixels = N "
            "in vistrace.toml")


# --- telling what a file is ----------------------------------------------------------------------

_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))

_RASTERISE = "rasterise it to PNG first (e.g. `rsvg-convert -o out.png in.svg`, or export from Inkscape)"


def refusal(head: bytes) -> str | None:
    """Why content starting with ``head`` is refused before any decoder sees it (what it is and what to
    do); None when it may be an image."""
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    body = body.lstrip()
    low = body[:HEAD].lower()
    if low.startswith(b"%pdf-"):
        return "a PDF document, not an image; render the page to PNG first (e.g. `pdftoppm -png -r 150 in.pdf out`)"
    if low.startswith(b"%!ps") or head[:4] == b"\xc5\xd0\xd3\xc6":
        return ("a PostScript/EPS file; vistrace does not run Ghostscript on inputs: " + _RASTERISE)
    if low.startswith(b"<") and b"<svg" in low:
        return "an SVG file: vector images are not supported; " + _RASTERISE
    if head[:2] == b"\x1f\x8b":
        return "a gzip-compressed file (an .svgz vector image?), not an image; decompress and rasterise it to PNG first"
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page, not an image (was a download saved instead of the picture?)"
    if low.startswith(b"<?xml"):
        return "an XML document, not an image"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1",
                                                 b"avif", b"avis"):
        return "a HEIF/AVIF image, which vistrace does not read; convert it to PNG or JPEG first"
    if head[:4] == b"8BPS":
        return "a Photoshop (PSD) file; export it as PNG first"
    if head[:4] == b"PK\x03\x04":
        return "a ZIP archive, not an image"
    if head[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or head[:4] == b"\xff\x4f\xff\x51":
        return "a JPEG 2000 file, which vistrace does not read; convert it to PNG or JPEG first"
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "a JPEG XL file, which vistrace does not read; convert it to PNG or JPEG first"
    return None


def sniff_format(head: bytes) -> str | None:
    """The raster format ``head`` starts like (PNG, JPEG, GIF, TIFF, BMP, WEBP, PPM), or None."""
    for magic, fmt in _MAGIC:
        if head.startswith(magic):
            return fmt
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if re.match(rb"P[1-6]\s", head[:3]):
        return "PPM"
    return None


def declared_size(head: bytes) -> tuple[int, int] | None:
    """The width and height a PNG, GIF, BMP, TIFF or PPM header declares (without PIL), or None."""
    fmt = sniff_format(head)
    try:
        if fmt == "PNG" and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if fmt == "GIF":
            return struct.unpack("<HH", head[6:10])
        if fmt == "BMP":
            w, h = struct.unpack("<ii", head[18:26])
            return w, abs(h)
        if fmt == "TIFF":
            order = "<" if head[:2] == b"II" else ">"
            (ifd,) = struct.unpack(order + "I", head[4:8])
            (count,) = struct.unpack(order + "H", head[ifd:ifd + 2])
            dims: dict[int, int] = {}
            for i in range(count):
                tag, kind, _, value = struct.unpack(order + "HHI4s", head[ifd + 2 + 12 * i:ifd + 14 + 12 * i])
                if tag in (256, 257):
                    dims[tag] = struct.unpack(order + ("H" if kind == 3 else "I"), value[:2 if kind == 3 else 4])[0]
            return (dims[256], dims[257]) if len(dims) == 2 else None
        if fmt == "PPM":
            text = re.sub(rb"#[^\n]*", b" ", head[2:200])
            w, h = (int(t) for t in text.split()[:2])
            return w, h
    except (struct.error, ValueError, KeyError):
        return None
    return None


def _is_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of the sample
            return False
        text = head[:exc.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\n\r\f" for c in text)


def _unidentified(name: str, head: bytes) -> InputError:
    fmt = sniff_format(head)
    hint = f"expected {EXPECTED}"
    if fmt is not None:
        size = declared_size(head)
        if size is not None and (size[0] < 1 or size[1] < 1):
            return InputError(f"cannot read image {name}: it is a {fmt} file that declares {size[0]}x{size[1]} pixels; "
                              "an image needs at least 1x1", hint=hint)
        return InputError(f"cannot read image {name}: it starts like a {fmt} file but its header is corrupt or "
                          "truncated", hint=hint)
    if _is_text(head):
        return InputError(f"cannot read image {name}: it is a text file, not an image", hint=hint)
    return InputError(f"cannot read image {name}: it is not an image file vistrace can read (it starts with "
                      f"{head[:8]!r})", hint=hint)


# --- loading -----------------------------------------------------------------------------------

def load(src: str | Path | bytes, *, name: str | None = None, limit: int | None = None) -> Loaded:
    """Read an image file (a path) or image bytes: checked, decoded (first frame), upright, 8-bit.

    ``name`` is how errors and notes call the input (default: the path, or "image bytes");
    ``limit`` the pixel limit (default :func:`max_pixels`). Raises :class:`InputError` (or
    :class:`ImageTooLarge`) naming the input and what was expected.
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        return _load(io.BytesIO(data), data[:HEAD], len(data), name or "image bytes", limit)
    p = Path(src)
    label = name or str(p)
    if not p.exists():
        raise InputError(f"image file not found: {p}", hint="check the path given with --image")
    if p.is_dir():
        raise InputError(f"expected an image file, got a directory: {p}")
    if not p.is_file():
        raise InputError(f"expected an image file, got a special file (device, pipe or socket): {p}")
    try:
        f = p.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read image {label}: {exc.strerror or exc}") from None
    with f:
        head = f.read(HEAD)
        size = os.fstat(f.fileno()).st_size
        f.seek(0)
        return _load(f, head, size, label, limit)


def _load(fp, head: bytes, size: int, name: str, limit: int | None) -> Loaded:
    from PIL import ImageOps

    hint = f"expected {EXPECTED}"
    if size == 0:
        raise InputError(f"cannot read image {name}: the file is empty (0 bytes)", hint=hint)
    why = refusal(head)
    if why:
        raise InputError(f"cannot read image {name}: it is {why}", hint=hint)
    im = _open(fp, name, head, limit)
    try:
        w, h = im.size
        fmt = im.format or "?"
        try:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if frames > 1:
                im.seek(0)
        except Exception as exc:  # noqa: BLE001 - any decoder failure on a hostile file is an input error
            raise InputError(f"cannot read image {name}: its {fmt} frames are truncated or corrupt "
                             f"({type(exc).__name__}: {exc})", hint=hint) from None
        try:
            im.load()
        except MemoryError:
            raise InputError(f"cannot read image {name}: not enough memory to decode {w}x{h} pixels",
                             hint=_limit_hint()) from None
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read image {name}: the {fmt} file is truncated or corrupt "
                             f"({type(exc).__name__}: {exc})", hint=f"expected a complete {fmt} file") from None
        if fmt == "GIF" and _last_byte(fp, size) != b";":
            raise InputError(f"cannot read image {name}: the GIF file is truncated (it ends without the GIF trailer, "
                             f"after {frames} readable frame{'s' if frames != 1 else ''})",
                             hint="expected a complete GIF file") from None
        notes: list[str] = []
        if frames > 1:
            what = "page" if fmt == "TIFF" else "frame"
            notes.append(f"{what} 1 of {frames} used")
            log.warning("%s has %d %ss; only the first is used", name, frames, what)
        try:
            orientation = im.getexif().get(0x0112)
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"cannot read image {name}: its EXIF data is corrupt ({type(exc).__name__}: {exc})",
                             hint="re-save the image without EXIF, or fix its metadata") from None
        pil = im
        if orientation in ORIENTATIONS:
            try:
                pil = ImageOps.exif_transpose(im)
            except Exception as exc:  # noqa: BLE001
                raise InputError(f"cannot read image {name}: cannot apply its EXIF orientation {orientation} "
                                 f"({type(exc).__name__}: {exc})") from None
            notes.append(f"EXIF orientation {orientation} applied ({ORIENTATIONS[orientation]})")
        elif orientation not in (None, 1):
            notes.append(f"EXIF orientation {orientation!r} is not a valid value (1-8); pixels used as stored")
            log.warning("%s: EXIF orientation %r is not a valid value; pixels used as stored", name, orientation)
        pil, more = normalize(pil, name)
        notes.extend(more)
        if pil is im:
            pil = im.copy()  # detached from the file (closing it would drop the pixels)
        return Loaded(pil, tuple(notes), fmt, frames, (w, h))
    finally:
        im.close()


def _last_byte(fp, size: int) -> bytes:
    here = fp.tell()
    try:
        fp.seek(size - 1)
        return fp.read(1)
    finally:
        fp.seek(here)


def _open(fp, name: str, head: bytes, limit: int | None):
    """PIL's lazy open (the header only), with the pixel limit checked before anything is decoded."""
    from PIL import Image as PILImage, UnidentifiedImageError

    if limit is None:
        limit = max_pixels()
        keep = limit  # the configured limit stays in force for direct PIL users
    else:
        keep = None
    with _OPEN_LOCK:
        PILImage.init()  # register every plugin, so the whitelist below can name them
        formats = [f for f in FORMATS if f in PILImage.OPEN]
        previous = PILImage.MAX_IMAGE_PIXELS
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", PILImage.DecompressionBombWarning)
                PILImage.MAX_IMAGE_PIXELS = limit
                im = PILImage.open(fp, formats=formats)
        except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
            raise _too_large(name, declared_size(head), limit, str(exc)) from None
        except UnidentifiedImageError:
            raise _unidentified(name, head) from None
        except Exception as exc:  # noqa: BLE001 - a plugin choking on a hostile header
            raise InputError(f"cannot read image {name}: its header is truncated or corrupt "
                             f"({type(exc).__name__}: {exc})",
                             hint=f"expected {EXPECTED}") from None
        finally:
            PILImage.MAX_IMAGE_PIXELS = keep if keep is not None else previous
    w, h = im.size
    if w < 1 or h < 1:
        im.close()
        raise InputError(f"cannot read image {name}: it is {w}x{h} pixels; an image needs at least 1x1",
                         hint=f"expected {EXPECTED}")
    if w * h > limit:
        im.close()
        raise _too_large(name, (w, h), limit)
    return im


def _too_large(name: str, size: tuple[int, int] | None, limit: int, detail: str = "") -> ImageTooLarge:
    if size is not None:
        pixels = size[0] * size[1]
        what = f"{size[0]}x{size[1]} = {pixels:,} pixels"
    else:
        m = re.search(r"\((\d+) pixels\)", detail)
        pixels = int(m.group(1)) if m else None
        what = f"{pixels:,} pixels" if pixels else "larger than the pixel limit"
    return ImageTooLarge(f"cannot read image {name}: it is {what}, more than the limit of {limit:,} pixels "
                         "(a possible decompression bomb; nothing was decoded)", pixels=pixels, limit=limit,
                         hint=_limit_hint())


# --- modes ---------------------------------------------------------------------------------------

def normalize(pil, name: str = "image") -> tuple[Any, list[str]]:
    """``pil`` in mode L, RGB or RGBA, and notes for any conversion that changed values.

    1 -> L; P, PA, LA, La, RGBa -> RGBA when they carry transparency (else RGB); L/RGB with a
    transparent colour -> RGBA; CMYK, YCbCr, RGBX, HSV -> RGB; LAB -> RGB through sRGB; I;16 -> L
    (value / 257); I and F -> L, scaled by their range (see docs/images.md).
    """
    mode = pil.mode
    if mode in ("RGB", "L", "RGBA") and "transparency" not in pil.info:
        return pil, []
    try:
        if mode in ("RGB", "L"):
            return pil.convert("RGBA"), ["transparent colour key turned into alpha"]
        if mode == "RGBA":
            out = pil.copy()
            out.info.pop("transparency", None)
            return out, []
        if mode == "1":
            return pil.convert("L"), []
        if mode == "P":
            has_alpha = "transparency" in pil.info or (pil.palette is not None and pil.palette.mode == "RGBA")
            return pil.convert("RGBA" if has_alpha else "RGB"), []
        if mode in ("PA", "LA", "La", "RGBa"):
            return pil.convert("RGBA"), []
        if mode == "CMYK":
            note = "CMYK converted to RGB"
            if pil.info.get("icc_profile"):
                note += " (its embedded ICC profile was not applied)"
            return pil.convert("RGB"), [note]
        if mode in ("YCbCr", "RGBX", "HSV"):
            return pil.convert("RGB"), []
        if mode == "LAB":
            from PIL import ImageCms

            t = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
            return ImageCms.applyTransform(pil, t), ["CIE LAB converted to sRGB"]
        if mode.startswith("I;16") or mode in ("I", "F"):
            return _grey_to_8bit(pil, name)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"cannot read image {name}: its colour mode {mode} cannot be converted to RGB "
                         f"({type(exc).__name__}: {exc})", hint="convert it to 8-bit RGB or greyscale first") from None
    raise InputError(f"cannot read image {name}: its colour mode {mode} is not supported",
                     hint="convert it to 8-bit RGB or greyscale first")


def _grey_to_8bit(pil, name: str) -> tuple[Any, list[str]]:
    """16-bit, 32-bit integer and float greyscale to 8-bit, scaled (never clipped)."""
    import numpy as np

    mode = pil.mode
    if mode.startswith("I;16"):
        a = np.asarray(pil.convert("I"), dtype=np.float32)
        return _as_l(a / 257.0), ["16-bit greyscale scaled to 8-bit (value / 257)"]
    a = np.asarray(pil, dtype=np.float32)  # float32: exact for 16-bit values, half the memory
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise InputError(f"cannot read image {name}: {bad} of its float pixels are NaN or infinite",
                         hint="expected finite values: replace NaN/inf, or save an 8- or 16-bit image")
    lo, hi = float(a.min()), float(a.max())
    kind = "float" if mode == "F" else "32-bit integer"
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return _as_l(a * 255.0), ["float greyscale 0..1 scaled to 0..255"]
    if lo >= 0.0 and hi <= 255.0:
        return _as_l(a), [f"{kind} greyscale with values in 0..255 used as 8-bit"]
    if mode == "I" and lo >= 0.0 and hi <= 65535.0:
        return _as_l(a / 257.0), ["32-bit greyscale with values in 0..65535 read as 16-bit, "
                                  "scaled to 8-bit (value / 257)"]
    if hi == lo:
        note = f"{kind} greyscale of one constant value {lo:g} (outside 0..255) shown as 0"
        scaled = a * 0.0
    else:
        note = f"{kind} greyscale values {lo:g}..{hi:g} stretched to 0..255"
        scaled = (a - lo) * (255.0 / (hi - lo))
    log.warning("%s: %s", name, note)
    return _as_l(scaled), [note]


def _as_l(a):
    import numpy as np
    from PIL import Image as PILImage

    return PILImage.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def describe(source: str, notes: tuple[str, ...] | list[str]) -> str:
    """A value's ``source`` with the loader's notes: ``anim.gif (frame 1 of 12 used)``."""
    return f"{source} ({'; '.join(notes)})" if notes else source
