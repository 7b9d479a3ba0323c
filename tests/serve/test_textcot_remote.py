"""Given an expert server, when the TextCoT evaluation is built with ``experts=URL``, then its expert tools
(OCR, caption, locate, ask) are the server's and the model-free ones stay local."""

from __future__ import annotations

import pytest

from tests.conftest import shared
from tests.serve.conftest import TOKEN
from vistrace.serve.client import RemoteTool


def test_textcot_with_experts_answers_ocr_on_the_server(server, monkeypatch):
    from vistrace.programs.families.textcot import textcot_set
    from vistrace.values import Image

    # given the SROIE set built against the server
    monkeypatch.setenv("VISTRACE_EXPERTS_TOKEN", TOKEN)
    evalset = textcot_set("sroie", shared("sroie"), experts=server.url)
    reg = evalset.registry()
    # then the experts are remote and the crops local
    for name in ("ocr", "caption", "locate", "ask"):
        assert isinstance(reg.get(name), RemoteTool), name
    assert not isinstance(reg.get("crop"), RemoteTool)
    # and an OCR call through it is answered by the server
    receipt = Image.open(sorted(shared("sroie/img").glob("*.jpg"))[0])
    value, info = reg.get("ocr").invoke({"image": receipt})
    assert info["backend"].startswith("remote:") and len(value) > 0


def test_textcot_with_an_invalid_experts_url_is_an_input_error():
    from vistrace.errors import InputError
    from vistrace.programs.families.textcot import textcot_set

    with pytest.raises(InputError, match="http"):
        textcot_set("sroie", shared("sroie"), experts="gpu-box:8765")
