"""Given image files built to trip an image loader (truncated, mislabelled, empty, decompression bombs, odd
colour modes, rotated, animated, vector), when vistrace reads them — ``Image.open``, ``Image.from_bytes``,
``vistrace run --image``, the expert server — then each is read correctly (upright, 8-bit, alpha kept, the
first frame used and said so) or refused with an ``InputError`` naming the file and what was expected.
Never a raw PIL or numpy exception.

Every file is made here, in ``tmp_path``, with PIL/numpy or by hand (no binary fixtures).
"""

from __future__ import annotations

import io
import json
import logging
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from vistrace.errors import InputError
from vistrace.values import Image
from vistrace.values.imageio import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, ImageTooLarge, max_pixels

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def no_stray_settings(monkeypatch, tmp_path):
    """Each test starts from the default pixel limit: no env variable, no settings file."""
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    monkeypatch.delenv("VISTRACE_CONFIG", raising=False)
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", PILImage.MAX_IMAGE_PIXELS)  # restored after each test


# --- file makers -----------------------------------------------------------------------------------

def encoded(pil, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    pil.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_by_hand(width: int, height: int, *, depth: int = 8, colour: int = 0, rows: bytes = b"") -> bytes:
    """A PNG with any header (PIL refuses to write a 0x0 one or a bomb, and cannot write 16-bit RGB)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def gif_screen(width: int, height: int) -> bytes:
    """A GIF whose logical screen and only frame declare width x height, with a few bytes of data."""
    return (b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x2c" +
            struct.pack("<HHHH", 0, 0, width, height) + b"\x00\x02\x02\x44\x01\x00;")


def bmp_header(width: int, height: int) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40, 0, 0, 54) + dib


def tiff_header(width: int, height: int) -> bytes:
    tags = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, 8), (277, 3, 1, 1), (278, 4, 1, height), (279, 4, 1, (width * height) & 0xFFFFFFFF)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd


def noise(seed: int = 0) -> PILImage.Image:
    return PILImage.fromarray(np.random.default_rng(seed).integers(0, 256, (96, 96, 3), dtype=np.uint8))


def noise_png() -> bytes:
    return encoded(noise(), "PNG")


def noise_jpeg() -> bytes:
    return encoded(noise(), "JPEG", quality=90)


def animated_gif(n: int = 12, size=(16, 16)) -> bytes:
    frames = [PILImage.new("RGB", size, (20 * i, 200, 255 - 20 * i)) for i in range(n)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def a_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("picture.png", noise_png())
    return buf.getvalue()


def float_tiff(values) -> bytes:
    return encoded(PILImage.fromarray(np.asarray(values, dtype=np.float32)), "TIFF")


SVG = (b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- made by a drawing program -->\n'
       b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64" fill="red"/>'
       b"</svg>\n")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def never_decoded(monkeypatch):
    """Fails the test if any pixel is decoded (a bomb must be refused from its header alone)."""
    from PIL import ImageFile

    def refuse(self, *a, **kw):
        raise AssertionError(f"pixels of a {self.size} image were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_the_never_decoded_guard_catches_a_decode(tmp_path, never_decoded):
    """(The guard is real: a decode under it fails, so a bomb refused under it was refused unread.)"""
    with pytest.raises(InputError, match="were decoded"):
        Image.open(write(tmp_path, "ok.png", encoded(PILImage.new("RGB", (4, 4)), "PNG")))


# --- refused: what it is, named, and what was expected ---------------------------------------------

REFUSED = [
    # (case, file name, bytes, words the message must contain)
    ("zero-byte file", "empty.png", lambda: b"", "empty (0 bytes)"),
    ("text named .png", "notes.png", lambda: b"this is not a picture\n", "text file"),
    ("HTML named .jpg", "photo.jpg", lambda: b"<!DOCTYPE html><html><body>404 not found</body></html>", "HTML page"),
    ("SVG", "drawing.svg", lambda: SVG, "vector images are not supported"),
    ("SVG named .png", "drawing.png", lambda: SVG, "rasterise it"),
    ("bare <svg> named .jpg", "logo.jpg", lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
    ("PDF named .png", "scan.png", lambda: b"%PDF-1.7\n1 0 obj\n<< >>\nendobj\n", "PDF document"),
    ("EPS named .jpg", "figure.jpg", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "PostScript"),
    ("XML named .png", "data.png", lambda: b"<?xml version='1.0'?><data>1</data>", "XML document"),
    ("ZIP named .png", "archive.png", a_zip, "ZIP archive"),
    ("HEIC named .jpg", "iphone.jpg", lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\0" * 64,
     "HEIF/AVIF"),
    ("PSD named .png", "layers.png", lambda: b"8BPS\x00\x01" + b"\0" * 64, "Photoshop"),
    ("random bytes named .gif", "noise.gif", lambda: bytes(np.random.default_rng(1).integers(128, 256, 512,
                                                                                               dtype=np.uint8)),
     "not an image file vistrace can read"),
    ("PNG magic then zeros", "broken.png", lambda: b"\x89PNG\r\n\x1a\n" + b"\0" * 64, "starts like a PNG"),
    ("PNG with a damaged header", "crc.png", lambda: noise_png()[:20] + b"\xff" + noise_png()[21:], "corrupt"),
    ("truncated PNG", "half.png", lambda: noise_png()[: len(noise_png()) // 2], "truncated"),
    ("truncated JPEG", "half.jpg", lambda: noise_jpeg()[: len(noise_jpeg()) // 2], "truncated"),
    ("truncated animated GIF", "half.gif", lambda: animated_gif()[: len(animated_gif()) // 2], "truncated"),
    ("JPEG cut after its header", "stub.jpg", lambda: noise_jpeg()[:30], "truncated"),
    ("0x0 PNG", "zero.png", lambda: png_by_hand(0, 0), "declares 0x0 pixels"),
    ("Wx0 PNG", "flat.png", lambda: png_by_hand(10, 0), "declares 10x0 pixels"),
    ("0xH PNG", "thin.png", lambda: png_by_hand(0, 10), "declares 0x10 pixels"),
    ("0x0 GIF", "zero.gif", lambda: gif_screen(0, 0), "declares 0x0 pixels"),
    ("Wx0 BMP", "flat.bmp", lambda: bmp_header(10, 0), "declares 10x0 pixels"),
    ("0xH TIFF", "thin.tif", lambda: tiff_header(0, 10), "declares 0x10 pixels"),
    ("Wx0 PGM", "flat.pgm", lambda: b"P5 10 0 255\n", "declares 10x0 pixels"),
    ("float TIFF with NaN", "depth.tif", lambda: float_tiff([[np.nan, 1.0], [0.5, 0.2]]), "NaN or infinite"),
]


@pytest.mark.parametrize("case, name, make, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_a_hostile_file_is_an_input_error_naming_it_and_what_was_expected(tmp_path, case, name, make, words):
    """Given a file that is not a readable image, when it is opened, then an InputError names the file,
    says what it is and what was expected."""
    path = write(tmp_path, name, make())
    with pytest.raises(InputError) as err:
        Image.open(path)
    text = str(err.value)
    assert str(path) in text, text
    assert words in text, text
    assert "expected" in text, text
    assert err.value.__cause__ is None or isinstance(err.value.__cause__, InputError)


@pytest.mark.parametrize("case, name, make, words", REFUSED, ids=[c[0] for c in REFUSED])
def test_the_same_bytes_are_refused_the_same_way_from_memory(case, name, make, words):
    """Given the same hostile bytes, when given to Image.from_bytes, then the error names the given source."""
    with pytest.raises(InputError) as err:
        Image.from_bytes(make(), source=f"upload:{name}")
    assert f"upload:{name}" in str(err.value) and words in str(err.value)


def test_a_missing_path_a_folder_and_a_device_are_refused(tmp_path):
    with pytest.raises(InputError, match="image file not found"):
        Image.open(tmp_path / "nope.png")
    with pytest.raises(InputError, match="got a directory"):
        Image.open(tmp_path)
    if Path("/dev/zero").exists():
        with pytest.raises(InputError, match="special file"):
            Image.open("/dev/zero")


# --- decompression bombs and huge dimensions --------------------------------------------------------

BOMBS = [
    ("PNG header 100000x100000", "bomb.png", lambda: png_by_hand(100_000, 100_000), "100000x100000"),
    ("PNG header 20000x20000 (PIL only warns)", "warn.png", lambda: png_by_hand(20_000, 20_000), "20000x20000"),
    ("PNG 1 x 200 million", "line.png", lambda: png_by_hand(1, 200_000_000), "1x200000000"),
    ("GIF screen 65535x65535", "bomb.gif", lambda: gif_screen(65535, 65535), "65535x65535"),
    ("BMP header 60000x60000", "bomb.bmp", lambda: bmp_header(60_000, 60_000), "60000x60000"),
    ("TIFF header 60000x60000", "bomb.tif", lambda: tiff_header(60_000, 60_000), "60000x60000"),
]


@pytest.mark.parametrize("case, name, make, size", BOMBS, ids=[c[0] for c in BOMBS])
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, never_decoded, case, name, make, size):
    """Given a small file whose header declares more pixels than the limit, when opened, then ImageTooLarge
    (an InputError) names the file, its size and the limit, and no pixel was decoded."""
    path = write(tmp_path, name, make())
    assert path.stat().st_size < 2000
    with pytest.raises(ImageTooLarge) as err:
        Image.open(path)
    text = str(err.value)
    assert str(path) in text and size in text and f"limit of {DEFAULT_MAX_PIXELS:,} pixels" in text, text
    assert MAX_PIXELS_ENV in (err.value.hint or "")
    assert isinstance(err.value, InputError)


def test_a_real_compressed_bomb_is_refused_under_a_configured_limit(tmp_path, monkeypatch, never_decoded):
    """Given VISTRACE_MAX_PIXELS=1000000 and a 4000x4000 PNG that compresses to a few KB, when opened, then
    it is refused before decoding."""
    monkeypatch.setenv(MAX_PIXELS_ENV, "1_000_000")
    path = write(tmp_path, "zeros.png", encoded(PILImage.new("L", (4000, 4000)), "PNG", optimize=True))
    assert path.stat().st_size < 50_000
    with pytest.raises(ImageTooLarge, match=r"4000x4000 = 16,000,000 pixels, more than the limit of 1,000,000"):
        Image.open(path)


def test_the_pixel_limit_comes_from_the_environment_then_the_settings_file(tmp_path, monkeypatch):
    """Given [images] max_pixels in vistrace.toml, when images are opened, then that limit applies, the
    environment overrides it, PIL's own limit follows it, and a bad value is an error naming its source."""
    small = write(tmp_path, "small.png", encoded(PILImage.new("RGB", (20, 20)), "PNG"))
    big = write(tmp_path, "big.png", encoded(PILImage.new("RGB", (50, 50)), "PNG"))
    assert max_pixels() == DEFAULT_MAX_PIXELS
    (tmp_path / "vistrace.toml").write_text("[images]\nmax_pixels = 1000\n")
    assert max_pixels() == 1000
    assert Image.open(small).size == (20, 20)
    assert PILImage.MAX_IMAGE_PIXELS == 1000  # code opening images with PIL directly gets the same bound
    with pytest.raises(ImageTooLarge, match="50x50 = 2,500 pixels, more than the limit of 1,000"):
        Image.open(big)
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    assert Image.open(big).size == (50, 50)
    assert Image.open(big, max_pixels=10_000).size == (50, 50)
    with pytest.raises(ImageTooLarge):
        Image.open(big, max_pixels=100)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(InputError, match=f"{MAX_PIXELS_ENV} must be a positive whole number"):
        Image.open(small)
    monkeypatch.delenv(MAX_PIXELS_ENV)
    (tmp_path / "vistrace.toml").write_text("[images]\nmax_pixels = -5\n")
    with pytest.raises(InputError, match=r"\[images\] max_pixels in .*vistrace.toml must be a positive"):
        Image.open(small)


def test_a_long_thin_image_within_the_limit_is_read(tmp_path):
    """Given a 30000x2 image (huge in one dimension, few pixels), when opened, then it is read whole."""
    arr = np.tile(np.arange(30_000) % 256, (2, 1)).astype(np.uint8)
    img = Image.open(write(tmp_path, "strip.png", encoded(PILImage.fromarray(arr), "PNG")))
    assert img.size == (30_000, 2) and np.array_equal(img.array(), arr)


# --- EXIF orientation --------------------------------------------------------------------------------

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def upright() -> np.ndarray:
    """48 wide, 32 high: red top-left, green top-right, blue bottom-left, white bottom-right."""
    a = np.zeros((32, 48, 3), np.uint8)
    a[:16, :24], a[:16, 24:], a[16:, :24], a[16:, 24:] = RED, GREEN, BLUE, WHITE
    return a


# how a camera stores the upright picture for each orientation tag (the tag says how to undo it)
STORED = {
    2: lambda u: u[:, ::-1],                     # mirrored
    3: lambda u: u[::-1, ::-1],                  # upside down
    4: lambda u: u[::-1],                        # flipped
    5: lambda u: u.transpose(1, 0, 2),           # transposed
    6: lambda u: np.rot90(u, 1),                 # camera turned clockwise: stored turned counter-clockwise
    7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),
    8: lambda u: np.rot90(u, -1),                # camera turned counter-clockwise
}


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("orientation", [3, 6, 8, 2, 4, 5, 7])
def test_exif_orientation_is_applied_so_pixels_are_upright(tmp_path, orientation, fmt):
    """Given a picture stored sideways with the EXIF orientation tag saying so, when opened, then the pixels
    are upright (red top-left, green top-right, blue bottom-left) and the source says the tag was applied."""
    stored = np.ascontiguousarray(STORED[orientation](upright()))
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    path = write(tmp_path, f"camera.{fmt.lower()}", encoded(PILImage.fromarray(stored), fmt, exif=exif, quality=95)
                 if fmt == "JPEG" else encoded(PILImage.fromarray(stored), fmt, exif=exif))
    img = Image.open(path)
    assert img.size == (48, 32)
    a = img.array().astype(int)
    for (y, x), colour in {(8, 12): RED, (8, 36): GREEN, (24, 12): BLUE, (24, 36): WHITE}.items():
        assert np.abs(a[y, x] - colour).max() < 40, (orientation, (x, y), a[y, x])
    assert f"EXIF orientation {orientation} applied" in img.source
    # the orientation tag is gone from the pixels' metadata, so nothing downstream rotates them again
    assert img.pil.getexif().get(0x0112) in (None, 1)


def test_an_invalid_orientation_tag_is_said_not_guessed(tmp_path):
    exif = PILImage.Exif()
    exif[0x0112] = 9
    img = Image.open(write(tmp_path, "odd.jpg", encoded(PILImage.fromarray(upright()), "JPEG", exif=exif)))
    assert img.size == (48, 32) and "EXIF orientation 9 is not a valid value" in img.source


# --- colour modes --------------------------------------------------------------------------------------

def gradient16(width: int = 256) -> np.ndarray:
    return np.tile(np.linspace(0, 65535, width).round().astype(np.uint16), (4, 1))


def rgb16_png() -> bytes:
    """A 16-bit-per-channel RGB PNG (colour type 2, depth 16): a 0..65535 ramp in R, G reversed, B zero."""
    ramp = np.linspace(0, 65535, 64).round()
    px = np.stack([ramp, ramp[::-1], np.zeros_like(ramp)], axis=-1).astype(">u2")  # PNG samples are big-endian
    rows = b"".join(b"\x00" + px.tobytes() for _ in range(2))
    return png_by_hand(64, 2, depth=16, colour=2, rows=rows)


def test_a_16bit_grey_png_maps_to_the_full_8bit_range(tmp_path):
    """Given a 16-bit greyscale PNG ramp 0..65535, when opened, then it is 8-bit grey 0..255, monotonic,
    scaled (the middle is mid-grey), not clipped (which would make nearly everything white)."""
    img = Image.open(write(tmp_path, "ramp16.png", encoded(PILImage.fromarray(gradient16()), "PNG")))
    a = img.array()[0].astype(int)
    assert img.pil.mode == "L" and a.min() == 0 and a.max() == 255
    assert (np.diff(a) >= 0).all() and abs(a[128] - 128) <= 1
    assert len(np.unique(a)) > 250
    assert "16-bit" in img.source


@pytest.mark.parametrize("case, data, note", [
    ("16-bit TIFF", lambda: encoded(PILImage.fromarray(gradient16()), "TIFF"), "16-bit"),
    ("32-bit integer TIFF 0..65535", lambda: encoded(PILImage.fromarray(gradient16().astype(np.int32)), "TIFF"),
     "read as 16-bit"),
    ("float TIFF 0..1", lambda: float_tiff(np.tile(np.linspace(0, 1, 256), (4, 1))), "0..1 scaled"),
    ("float TIFF -1000..1000", lambda: float_tiff(np.tile(np.linspace(-1000, 1000, 256), (4, 1))), "stretched"),
], ids=["16-bit TIFF", "32-bit integer TIFF", "float TIFF 0..1", "float TIFF -1000..1000"])
def test_deep_greyscale_is_scaled_to_the_full_range(tmp_path, case, data, note):
    img = Image.open(write(tmp_path, "deep.tif", data()))
    a = img.array()[0].astype(int)
    assert img.pil.mode == "L" and a.min() == 0 and a.max() == 255 and (np.diff(a) >= 0).all()
    assert note in img.source


def test_a_16bit_rgb_png_keeps_its_full_range(tmp_path):
    img = Image.open(write(tmp_path, "rgb16.png", rgb16_png()))
    a = img.array().astype(int)
    assert img.pil.mode == "RGB" and img.size == (64, 2)
    assert (a[0, 0, 0], a[0, -1, 0], a[0, 0, 1], a[0, -1, 1]) == (0, 255, 255, 0)
    assert (np.diff(a[0, :, 0]) >= 0).all() and a[..., 2].max() == 0


def test_palette_transparency_becomes_alpha(tmp_path):
    """Given a palette PNG whose index 0 is transparent (tRNS), when opened, then it is RGBA with alpha 0
    exactly where index 0 was and the other colours opaque and right."""
    idx = np.zeros((8, 8), np.uint8)
    idx[:, 4:] = 1
    pal = PILImage.fromarray(idx, mode="L").convert("P")
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putdata(idx.flatten().tolist())
    for name, data in (("pal.png", encoded(pal, "PNG", transparency=0)),
                       ("pal.gif", encoded(pal, "GIF", transparency=0))):
        img = Image.open(write(tmp_path, name, data))
        a = img.array()
        assert img.pil.mode == "RGBA", name
        assert (a[:, :4, 3] == 0).all() and (a[:, 4:, 3] == 255).all(), name
        assert tuple(a[0, 6, :3]) == (0, 0, 255), name


def test_a_transparent_colour_key_becomes_alpha(tmp_path):
    grey = np.full((4, 4), 7, np.uint8)
    grey[0, 0] = 200
    img = Image.open(write(tmp_path, "key.png", encoded(PILImage.fromarray(grey), "PNG", transparency=7)))
    a = img.array()
    assert img.pil.mode == "RGBA" and a[0, 0, 3] == 255 and a[1, 1, 3] == 0


def test_alpha_is_kept_for_rgba_and_la(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.arange(16).reshape(4, 4) * 16
    img = Image.open(write(tmp_path, "rgba.png", encoded(PILImage.fromarray(rgba), "PNG")))
    assert img.pil.mode == "RGBA" and np.array_equal(img.array(), rgba)
    la = PILImage.new("LA", (4, 4), (100, 50))
    img = Image.open(write(tmp_path, "la.png", encoded(la, "PNG")))
    assert img.pil.mode == "RGBA" and tuple(img.array()[0, 0]) == (100, 100, 100, 50)


def test_one_bit_images_become_8bit_grey(tmp_path):
    bits = PILImage.new("1", (8, 8), 0)
    bits.putpixel((3, 3), 1)
    img = Image.open(write(tmp_path, "bits.png", encoded(bits, "PNG")))
    assert img.pil.mode == "L" and img.array()[3, 3] == 255 and img.array()[0, 0] == 0


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_rgb_with_about_the_right_colours(tmp_path, fmt):
    patches = np.zeros((16, 64, 3), np.uint8)
    for i, colour in enumerate((RED, GREEN, BLUE, WHITE)):
        patches[:, 16 * i:16 * (i + 1)] = colour
    cmyk = PILImage.fromarray(patches).convert("CMYK")
    img = Image.open(write(tmp_path, f"print.{fmt.lower()}", encoded(cmyk, fmt)))
    a = img.array().astype(int)
    assert img.pil.mode == "RGB" and "CMYK converted to RGB" in img.source
    for i, colour in enumerate((RED, GREEN, BLUE, WHITE)):
        assert np.abs(a[8, 16 * i + 8] - colour).max() < 40, (colour, a[8, 16 * i + 8])


# --- frames --------------------------------------------------------------------------------------------

def test_an_animated_gif_uses_the_first_frame_and_says_so(tmp_path, caplog):
    path = write(tmp_path, "anim.gif", animated_gif(12))
    with caplog.at_level(logging.WARNING, logger="vistrace.images"):
        img = Image.open(path)
    assert np.abs(img.array()[0, 0].astype(int) - (0, 200, 255)).max() < 8
    assert img.source == f"{path} (frame 1 of 12 used)"
    assert "anim.gif (frame 1 of 12 used)" in img.summary()
    assert any("12 frames; only the first is used" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("fmt, word", [("TIFF", "page"), ("PNG", "frame"), ("WEBP", "frame")])
def test_multi_page_tiff_and_animated_png_webp_use_the_first(tmp_path, fmt, word):
    pages = [PILImage.new("RGB", (8, 8), (60 * i, 0, 0)) for i in range(3)]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    img = Image.open(write(tmp_path, f"pages.{fmt.lower()}",
                           encoded(pages[0], fmt, save_all=True, append_images=pages[1:], **kw)))
    assert tuple(img.array()[0, 0]) == (0, 0, 0)
    assert f"{word} 1 of 3 used" in img.source


# --- things that look odd but are images -------------------------------------------------------------

def test_content_decides_not_the_extension(tmp_path):
    """A PNG named .jpg and an ASCII PGM (a text file that is an image) are read as what they are."""
    arr = upright()
    png_named_jpg = write(tmp_path, "really_png.jpg", encoded(PILImage.fromarray(arr), "PNG"))
    assert np.array_equal(Image.open(png_named_jpg).array(), arr)
    img = Image.open(write(tmp_path, "ascii.pgm", b"P2\n# a comment\n2 2\n255\n0 255\n128 64\n"))
    assert img.array().tolist() == [[0, 255], [128, 64]]


# --- values built in memory ---------------------------------------------------------------------------

def test_from_array_scales_16bit_and_refuses_empty_nan_and_odd_shapes():
    a = Image.from_array(gradient16()).array()[0].astype(int)
    assert a.min() == 0 and a.max() == 255 and abs(a[128] - 128) <= 1
    assert Image.from_array(np.eye(3, dtype=bool)).array().max() == 255
    for bad, words in ((np.zeros((0, 5, 3), np.uint8), "needs at least 1x1"),
                       (np.full((2, 2), np.nan), "NaN"),
                       (np.zeros((2, 2, 2), np.uint8), "expected an HxW"),
                       (np.zeros((2,), np.uint8), "expected an HxW"),
                       (np.array([["a", "b"]]), "expected numbers")):
        with pytest.raises(InputError, match=words):
            Image.from_array(bad, source="test array")


def test_the_constructor_normalises_pil_images_it_is_given():
    assert Image(PILImage.fromarray(gradient16()), source="mem").array().max() == 255
    pal = PILImage.new("P", (2, 2), 0)
    pal.info["transparency"] = 0
    assert Image(pal, source="mem").pil.mode == "RGBA"
    with pytest.raises(InputError, match="0x0 pixels"):
        Image(PILImage.new("RGB", (0, 0)), source="mem")


# --- the command line ---------------------------------------------------------------------------------

PROGRAM = "def width(image: Image) -> int:\n    return image.width\n"

CLI_REFUSED = [
    ("bomb", "bomb.png", lambda: png_by_hand(50_000, 50_000), "more than the limit of"),
    ("svg", "drawing.svg", lambda: SVG, "vector images are not supported"),
    ("truncated", "half.png", lambda: noise_png()[:300], "truncated"),
    ("empty", "empty.jpg", lambda: b"", "empty (0 bytes)"),
]


@pytest.mark.parametrize("case, name, make, words", CLI_REFUSED, ids=[c[0] for c in CLI_REFUSED])
def test_vistrace_run_with_a_hostile_image_exits_2_with_a_clear_message(tmp_path, case, name, make, words):
    from typer.testing import CliRunner

    from vistrace.cli import app

    prog = tmp_path / "width.vp"
    prog.write_text(PROGRAM)
    path = write(tmp_path, name, make())
    res = CliRunner().invoke(app, ["run", str(prog), "--image", str(path), "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and str(path) in res.output.replace("\n", "") and words in res.output
    assert "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_vistrace_run_in_a_real_process_warns_about_frames_and_refuses_a_bomb(tmp_path):
    """Given the installed command, when run on an animated GIF, then it succeeds, warns that only frame 1 of
    12 is used and the trace records it; on a bomb it exits 2 with one error line and no traceback."""
    prog = tmp_path / "width.vp"
    prog.write_text(PROGRAM)
    env = {**__import__("os").environ, "VISTRACE_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    gif = write(tmp_path, "anim.gif", animated_gif(12))
    res = subprocess.run([sys.executable, "-m", "vistrace", "run", str(prog), "--image", str(gif), "--no-cache",
                          "--out", str(tmp_path / "run"), "--json"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["value"] == 16
    assert "anim.gif has 12 frames; only the first is used" in res.stderr
    trace = json.loads((tmp_path / "run" / "trace.json").read_text())
    assert "frame 1 of 12 used" in json.dumps(trace["inputs"])
    bomb = write(tmp_path, "bomb.png", png_by_hand(50_000, 50_000))
    res = subprocess.run([sys.executable, "-m", "vistrace", "run", str(prog), "--image", str(bomb)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 2
    assert "more than the limit of 100,000,000 pixels" in res.stderr and "Traceback" not in res.stderr + res.stdout


# --- the expert server --------------------------------------------------------------------------------

def test_the_server_refuses_bombs_with_413_and_svg_or_broken_files_with_400(tmp_path):
    """Given `vistrace serve` with a 1-megapixel limit, when images are uploaded, then a bomb is 413
    ImageTooLarge, an SVG, a truncated PNG and an empty body 400, and a 16-bit PNG is accepted."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    from tests.serve.conftest import live
    from vistrace.serve.app import ServeLimits, create_app

    app = create_app(token=None, cache=False, limits=ServeLimits(max_pixels=1_000_000))
    with live(app) as s:
        def upload(data: bytes):
            return httpx.post(f"{s.url}/v1/images", content=data, timeout=30)

        r = upload(png_by_hand(100_000, 100_000))
        assert r.status_code == 413 and r.json()["error"]["type"] == "ImageTooLarge"
        assert "100000x100000" in r.json()["error"]["message"]
        r = upload(encoded(PILImage.new("L", (2000, 2000)), "PNG", optimize=True))
        assert r.status_code == 413 and "2000x2000" in r.json()["error"]["message"]
        for data in (SVG, noise_png()[:400], b""):
            r = upload(data)
            assert r.status_code == 400 and r.json()["error"]["type"] == "CorruptImage", (data[:20], r.text)
        r = upload(encoded(PILImage.fromarray(gradient16()), "PNG"))
        assert r.status_code == 200 and (r.json()["width"], r.json()["height"]) == (256, 4)


@pytest.mark.parametrize("data, status, words", [
    (SVG, 400, "vector images are not supported"),
    (b"%PDF-1.4\n", 400, "PDF document"),
    (png_by_hand(5000, 5000), 413, "5000x5000"),
    (gif_screen(65535, 65535), 413, "65535x65535"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "starts like a PNG"),
])
def test_check_image_uses_the_shared_loader(data, status, words):
    """Given bytes the server is asked to accept (an upload, or a blob inline in a call), when checked, then
    the status and message come from the same loader as Image.open."""
    pytest.importorskip("fastapi")
    from vistrace.serve.app import ServeLimits, _HTTPError, check_image

    with pytest.raises(_HTTPError) as err:
        check_image(data, ServeLimits(max_pixels=1_000_000))
    assert err.value.status == status and words in err.value.message
