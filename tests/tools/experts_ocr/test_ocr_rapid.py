"""RapidOCR (the default ``ocr`` backend): local models only, cached engine, accuracy, rotation, registry."""

from __future__ import annotations

import socket

import pytest
from PIL import Image as PILImage

import vistrace
from vistrace.errors import BackendUnavailable, InputError
from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.tools.experts import ocr_rapid
from vistrace.tools.experts.ocr_common import amount_found, cer
from vistrace.tools.experts.ocr_rapid import MODEL_FILES, RapidOCRBackend, backends
from vistrace.tools.experts.ocr_tesseract import TesseractBackend
from vistrace.tools.model_cache import ModelCache
from vistrace.values import Box, Image

from .conftest import SROIE, need, page

CER_TARGET = 0.02
SROIE_TARGET = 0.90


def test_declares_itself():
    (b,) = backends()
    assert isinstance(b, RapidOCRBackend) and b.tool == "ocr" and b.name == "rapidocr"
    assert b.version == "3.10.0" and "PP-OCRv6" in b.model
    assert b.priority > TesseractBackend.priority


def test_models_come_from_the_installed_wheel(rapid):
    paths = ocr_rapid.model_paths()
    assert set(paths) == {"Det", "Cls", "Rec"}
    for section, path in paths.items():
        assert path.name == MODEL_FILES[section] and path.parent.name == "models" and path.is_file()
        assert path.parent.parent.name == "rapidocr"
    params = ocr_rapid.engine_params(paths)
    assert params["Det.model_path"] == str(paths["Det"]) and params["Rec.model_path"] == str(paths["Rec"])


def test_a_missing_model_file_is_named_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / MODEL_FILES["Det"]).write_bytes(b"x")
    monkeypatch.setattr(ocr_rapid, "model_dir", lambda: tmp_path)
    b = RapidOCRBackend()
    avail = b.availability()
    missing = str(tmp_path / MODEL_FILES["Cls"])
    assert not avail.ok and missing in avail.reason and "pip install rapidocr==3.10.0" in avail.fix
    with pytest.raises(BackendUnavailable) as err:
        b.run(image=Image(PILImage.new("RGB", (64, 32), "white")))
    assert missing in err.value.message and "rapidocr==3.10.0" in err.value.fix


def test_an_uninstalled_package_is_refused(monkeypatch):
    real = ocr_rapid.importlib.util.find_spec
    monkeypatch.setattr(ocr_rapid.importlib.util, "find_spec", lambda n: None if n == "rapidocr" else real(n))
    avail = RapidOCRBackend().availability()
    assert not avail.ok and "rapidocr" in avail.reason and "pip install rapidocr==3.10.0" in avail.fix


@pytest.mark.slow
def test_loading_and_reading_never_touch_the_network(rapid, monkeypatch):
    from rapidocr.utils.download_file import DownloadFile

    def refuse(*args, **kwargs):
        raise AssertionError("rapidocr tried to download")

    monkeypatch.setattr(DownloadFile, "run", classmethod(lambda cls, *a, **k: refuse()))
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cache = ModelCache()
    monkeypatch.setattr(ocr_rapid, "MODELS", cache)
    lines = rapid.run(image=page("phototest.tif"))
    assert "quick brown dog" in lines.text


@pytest.mark.slow
def test_the_engine_loads_once(rapid, monkeypatch):
    cache = ModelCache()
    monkeypatch.setattr(ocr_rapid, "MODELS", cache)
    img = page("phototest.tif").crop(Box(0, 80, 640, 200))
    first = rapid.run(image=img)
    second = rapid.run(image=img)
    key = f"ocr/rapidocr/{ocr_rapid.RAPIDOCR_VERSION}"
    assert cache.loads == {key: 1} and first == second
    assert first.lines[0].text == "This is a lot of 12 point text to test the"


@pytest.mark.slow
@pytest.mark.parametrize("name,turn", [("phototest.tif", 0), ("phototest-rotated-L.png", 3),
                                       ("phototest-rotated-R.png", 1)])
def test_phototest_character_error_rate(rapid, reference, name, turn):
    lines = rapid.run(image=page(name))
    assert cer(lines.text, reference) <= CER_TARGET, lines.text
    assert rapid.last_turn == turn
    img = page(name)
    assert all(0 <= ln.box.x1 < ln.box.x2 <= img.width and 0 <= ln.box.y1 < ln.box.y2 <= img.height for ln in lines)


@pytest.mark.slow
def test_upside_down_page(rapid, reference):
    img = page("phototest.tif")
    upside_down = Image(img.pil.rotate(180), source="phototest.tif turned 180")
    lines = rapid.run(image=upside_down)
    assert rapid.last_turn == 2 and cer(lines.text, reference) <= CER_TARGET
    first = lines.lines[0]  # 'This is a lot…' sits at the bottom of the turned page
    assert first.text.startswith("This is a lot") and first.box.y1 > img.height / 2


@pytest.mark.slow
def test_words_have_boxes_inside_their_line(rapid):
    lines = rapid.run(image=page("phototest.tif"))
    first = lines.lines[0]
    assert [w.text for w in first.words] == first.text.split()
    for w in first.words:
        assert first.box.x1 - 2 <= w.box.x1 < w.box.x2 <= first.box.x2 + 2
    assert [w.box.x1 for w in first.words] == sorted(w.box.x1 for w in first.words)


@pytest.mark.slow
def test_sroie_totals_are_read(rapid, receipts):
    misses = [(stem, total) for stem, image, total in receipts if not amount_found(total, rapid.run(image=image).text)]
    rate = 1 - len(misses) / len(receipts)
    assert rate >= SROIE_TARGET, misses


def registry() -> Registry:
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(RapidOCRBackend())
    return reg


@pytest.mark.slow
def test_find_text_returns_the_total_line_through_the_registry(rapid):
    path = need(SROIE / "img" / "002.jpg")
    run = vistrace.run("lines = find_text(image, 'total')\nresult = count(lines)", registry=registry(),
                       cache=False, image=str(path))
    assert run.ok, run.error
    step = run.trace.steps[0]
    assert step.tool == "find_text" and step.backend == "rapidocr" and "ocr: rapidocr" in (step.reason or "")
    texts = [ln["text"] for ln in step.output_json["lines"]]
    assert run.value == len(texts) >= 1
    assert all("total" in t.lower() for t in texts)
    assert any(t.startswith("TOTAL") and "33.9" in t for t in texts), texts


@pytest.mark.slow
def test_trace_records_the_backend_and_why(rapid):
    reg = registry()
    reg.add_backend(TesseractBackend())
    run = vistrace.run("lines = ocr(image)\nresult = count(lines)", registry=reg, cache=False,
                       image=str(need(PAGES_DIR / "phototest.tif")))
    assert run.ok, run.error
    step = run.trace.steps[0]
    assert step.backend == "rapidocr" and step.model == RapidOCRBackend.model and step.version == "3.10.0"
    assert "PP-OCRv6" in step.reason and "preferred over tesseract" in step.reason
    assert run.value == 8


@pytest.mark.slow
@pytest.mark.parametrize("zoom", [1, 2])
def test_boxes_found_in_a_crop_map_to_the_root(rapid, zoom):
    reg = registry()
    root = Image.open(need(SROIE / "img" / "002.jpg"))
    region = Box(0, 600, root.width, 780)
    out = (root.width * zoom, 180 * zoom) if zoom != 1 else None
    crop = root.crop(region, out_size=out)
    lines = reg.get("ocr")(registry=reg, image=crop)
    assert lines.count >= 4
    for ln in lines:
        assert region.x1 - 1 <= ln.box.x1 < ln.box.x2 <= region.x2 + 1
        assert region.y1 - 1 <= ln.box.y1 < ln.box.y2 <= region.y2 + 1
    total = next(ln for ln in lines if ln.text.startswith("TOTAL") and "33.92" in ln.text)
    # where the whole receipt puts it (SROIE's own box for 'TOTAL' is x 17..67, y 644..666)
    assert total.box.x1 == pytest.approx(17, abs=4) and total.box.y1 == pytest.approx(644, abs=6)


def test_a_truncated_image_is_an_error_naming_the_file(tmp_path):
    data = need(SROIE / "img" / "002.jpg").read_bytes()
    broken = tmp_path / "receipt.jpg"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError) as err:
        Image.open(broken)
    assert str(broken) in str(err.value) and "truncated" in str(err.value)
    with pytest.raises(InputError) as err:
        vistrace.run("result = ocr(image)", registry=registry(), cache=False, image=str(broken))
    assert str(broken) in str(err.value)


PAGES_DIR = SROIE.parent / "ocr_tesseract"
