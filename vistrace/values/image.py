"""Images with provenance: where the pixels came from, their hash, and for crops where they sit in the root."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar

from .base import Value
from .boxes import Box, Detections

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def pixel_sha256(pil) -> str:
    h = hashlib.sha256()
    h.update(f"{pil.mode}:{pil.width}x{pil.height}:".encode())
    h.update(pil.tobytes())
    return h.hexdigest()


class Image(Value):
    """Pixels (a PIL image, never mutated) plus provenance.

    A crop keeps ``offset`` (its top-left corner in root-image pixels) and ``scale`` (its pixels per
    root pixel, per axis, >1 after zooming in), so any box found in it maps back with ``to_root``.
    """

    type_name: ClassVar[str] = "Image"
    public: ClassVar[frozenset[str]] = frozenset(
        {"width", "height", "size", "source", "sha256", "offset", "scale", "root_size", "is_crop",
         "to_root", "from_root", "region", "summary"}
    )
    __slots__ = ("_pil", "source", "sha256", "offset", "scale", "root_size", "_frozen")
    # field types (the planner's grammar reads them)
    source: str
    sha256: str
    offset: tuple[float, float]
    scale: tuple[float, float]
    root_size: tuple[int, int]

    def __init__(self, pil, source: str = "", *, offset=(0.0, 0.0), scale=(1.0, 1.0), root_size=None,
                 sha256: str | None = None):
        if pil.width < 1 or pil.height < 1:
            from ..errors import InputError

            raise InputError(f"image {source or '(unnamed)'} is {pil.width}x{pil.height} pixels; an image needs at "
                             "least 1x1")
        if pil.mode not in ("RGB", "L", "RGBA") or "transparency" in pil.info:
            from .imageio import normalize

            pil, _ = normalize(pil, str(source) or "image")  # 16-bit scaled, palette alpha kept, CMYK to RGB
        pil.load()
        self._pil = pil
        self.source = str(source)
        self.sha256 = sha256 or pixel_sha256(pil)
        self.offset = (float(offset[0]), float(offset[1]))
        self.scale = (float(scale[0]), float(scale[1]))
        self.root_size = tuple(root_size) if root_size else (pil.width, pil.height)
        self._freeze()

    # construction ---------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, max_pixels: int | None = None) -> "Image":
        """Load an image file: first frame, EXIF orientation applied, 8-bit L/RGB/RGBA (see docs/images.md).

        A missing, empty, truncated, corrupt or unsupported file (SVG, PDF...) is an ``InputError`` naming
        it; one over the pixel limit (``max_pixels``, default the ``VISTRACE_MAX_PIXELS`` setting) is an
        ``ImageTooLarge``. What was done to the pixels is noted in ``source``, e.g.
        ``anim.gif (frame 1 of 12 used)``.
        """
        from .imageio import describe, load

        loaded = load(path, limit=max_pixels)
        return cls(loaded.pil, source=describe(str(Path(path)), loaded.notes))

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "", *, max_pixels: int | None = None) -> "Image":
        """Load an image from the bytes of an image file, exactly as :meth:`open` loads a file."""
        from .imageio import describe, load

        if not isinstance(data, (bytes, bytearray, memoryview)):
            from ..errors import InputError

            raise InputError(f"Image.from_bytes expects bytes, got {type(data).__name__}")
        name = source or "image bytes"
        loaded = load(data, name=name, limit=max_pixels)
        return cls(loaded.pil, source=describe(name, loaded.notes))

    @classmethod
    def from_array(cls, array, source: str = "array") -> "Image":
        """An image from an HxW (grey), HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) array.

        uint8 is used as is; bool becomes 0/255; uint16 is scaled to 8-bit (value / 257); any other
        number type is read as 0..255 (values outside are clipped). NaN or infinite values, empty and
        oddly shaped arrays are an ``InputError``.
        """
        from PIL import Image as PILImage
        import numpy as np

        from ..errors import InputError

        try:
            arr = np.asarray(array)
        except (ValueError, TypeError) as exc:
            raise InputError(f"Image.from_array ({source}): not an array of pixels: {exc}") from None
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise InputError(f"Image.from_array ({source}): expected an HxW, HxWx3 or HxWx4 array, got shape "
                             f"{tuple(arr.shape)}")
        if arr.shape[0] < 1 or arr.shape[1] < 1:
            raise InputError(f"Image.from_array ({source}): the array is {arr.shape[1]}x{arr.shape[0]} pixels; an "
                             "image needs at least 1x1")
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        elif arr.dtype == np.uint16:
            arr = np.rint(arr / 257.0).astype(np.uint8)
        elif arr.dtype != np.uint8:
            if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
                raise InputError(f"Image.from_array ({source}): expected numbers, got dtype {arr.dtype}")
            if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
                raise InputError(f"Image.from_array ({source}): the array has NaN or infinite values")
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        return cls(PILImage.fromarray(np.ascontiguousarray(arr)), source=source)

    # accessors ------------------------------------------------------------
    @property
    def pil(self):
        """The PIL image (treat as read-only; copy before drawing)."""
        return self._pil

    def array(self):
        import numpy as np

        a = np.asarray(self._pil)
        a.flags.writeable = False
        return a

    @property
    def width(self) -> int:
        return self._pil.width

    @property
    def height(self) -> int:
        return self._pil.height

    @property
    def size(self) -> tuple[int, int]:
        return (self._pil.width, self._pil.height)

    @property
    def is_crop(self) -> bool:
        return self.offset != (0.0, 0.0) or self.scale != (1.0, 1.0) or self.root_size != self.size

    # coordinates ----------------------------------------------------------
    def to_root(self, box):
        """Map a Box (or every box of Detections) from this image's pixels to root-image pixels."""
        if isinstance(box, Detections):
            return Detections((self.to_root(b) for b in box), box.query, self.root_size)
        sx, sy = self.scale
        ox, oy = self.offset
        return box.replace(x1=ox + box.x1 / sx, y1=oy + box.y1 / sy, x2=ox + box.x2 / sx, y2=oy + box.y2 / sy)

    def from_root(self, box):
        """Map a root-image Box into this image's pixel grid (the inverse of ``to_root``)."""
        if isinstance(box, Detections):
            return Detections((self.from_root(b) for b in box), box.query, self.size)
        sx, sy = self.scale
        ox, oy = self.offset
        return box.replace(x1=(box.x1 - ox) * sx, y1=(box.y1 - oy) * sy, x2=(box.x2 - ox) * sx, y2=(box.y2 - oy) * sy)

    def region(self) -> Box:
        """The area this image covers, as a Box in root-image pixels."""
        return self.to_root(Box(0, 0, self.width, self.height))

    def crop(self, box: Box, *, out_size: tuple[int, int] | None = None, source: str = "") -> "Image":
        """Cut ``box`` (root-image pixels) out of this image, optionally resizing to ``out_size``.

        The result remembers its place in the root image, so boxes found in it map back.
        """
        local = self.from_root(box)
        x1, y1, x2, y2 = (round(v) for v in local.xyxy)
        x1, y1 = max(0, x1), max(0, y1)
        x2, y2 = min(self.width, max(x2, x1 + 1)), min(self.height, max(y2, y1 + 1))
        pil = self._pil.crop((x1, y1, x2, y2))
        sx, sy = self.scale
        if out_size and tuple(out_size) != pil.size:
            from PIL import Image as PILImage

            fx, fy = out_size[0] / pil.width, out_size[1] / pil.height
            pil = pil.resize(tuple(out_size), PILImage.Resampling.BICUBIC)
            sx, sy = sx * fx, sy * fy
        ox, oy = self.offset
        root_offset = (ox + x1 / self.scale[0], oy + y1 / self.scale[1])
        return Image(pil, source=source or f"crop of {self.source or self.sha256[:8]}",
                     offset=root_offset, scale=(sx, sy), root_size=self.root_size)

    # value protocol -------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and (self.sha256, self.offset, self.scale) == (other.sha256, other.offset, other.scale)

    def __hash__(self) -> int:
        return hash((self.sha256, self.offset, self.scale))

    def __repr__(self) -> str:
        return f"Image({self.width}x{self.height}, source={self.source!r}, sha256={self.sha256[:12]}…)"

    def summary(self) -> str:
        where = ""
        if self.is_crop:
            r = self.region()
            where = f" crop of root [{r.x1:.0f},{r.y1:.0f},{r.x2:.0f},{r.y2:.0f}]"
        name = Path(self.source).name if self.source else "image"
        return f"{name} {self.width}x{self.height}{where}"

    def to_json(self) -> dict[str, Any]:
        return {"type": "Image", "source": self.source, "sha256": self.sha256, "size": list(self.size),
                "mode": self._pil.mode, "offset": list(self.offset), "scale": list(self.scale),
                "root_size": list(self.root_size)}

    def draw(self, canvas=None):
        """An image draws itself; on a root canvas a crop draws its outline."""
        from .draw import draw_box, rgb_canvas

        if canvas is None:
            return rgb_canvas(self._pil)
        out = rgb_canvas(canvas)
        if self.is_crop:
            draw_box(out, self.region().xyxy, "crop")
        return out
