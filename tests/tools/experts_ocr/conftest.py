"""Fixtures for the OCR backend tests: the shared evaluation material and the two real backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vistrace.tools.experts.ocr_rapid import RapidOCRBackend
from vistrace.tools.experts.ocr_tesseract import TesseractBackend
from vistrace.values import Image

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
PAGES = DATA / "ocr_tesseract"
SROIE = DATA / "sroie"


def need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared evaluation data not present: {path} (it lives beside the repository as ../shared/data)")
    return path


@pytest.fixture(scope="session")
def rapid() -> RapidOCRBackend:
    backend = RapidOCRBackend()
    avail = backend.availability()
    if not avail.ok:
        pytest.skip(f"rapidocr unavailable: {avail.reason} (fix: {avail.fix})")
    return backend


@pytest.fixture(scope="session")
def tess() -> TesseractBackend:
    backend = TesseractBackend()
    avail = backend.availability()
    if not avail.ok:
        pytest.skip(f"tesseract unavailable: {avail.reason} (fix: {avail.fix})")
    return backend


@pytest.fixture(scope="session")
def reference() -> str:
    return need(PAGES / "phototest.txt").read_text()


def page(name: str) -> Image:
    return Image.open(need(PAGES / name))


@pytest.fixture(scope="session")
def receipts() -> list[tuple[str, Image, str]]:
    """The 20 SROIE receipts: (id, image, key total)."""
    need(SROIE / "img")
    out = []
    for img in sorted((SROIE / "img").glob("*.jpg")):
        total = json.loads((SROIE / "key" / f"{img.stem}.json").read_text())["total"]
        out.append((img.stem, Image.open(img), total))
    return out
