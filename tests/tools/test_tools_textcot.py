"""TextCoT's tools and backends: ``locate``, ``ask``'s context, the vision-LLM box parser and backends
(against a scripted OpenAI-compatible server), and the offline backends (OCR + local LLM) on a real
SROIE receipt — with a scripted LLM for the deterministic checks and the real local model (slow)."""

from __future__ import annotations

import json

import pytest
from vistrace.tools import Availability, Backend, Registry
from vistrace.tools.adapters import vlm
from vistrace.tools.builtin import register_builtin
from vistrace.tools.builtin.textcot import union_box
from vistrace.tools.experts import textcot_offline as offline

from tests.agent.scripted_llm import ScriptedLLM
from tests.agent.scripted_server import ScriptedServer
from tests.conftest import shared
from vistrace.errors import BackendUnavailable, ToolArgumentError, ToolError
from vistrace.values import Box, Detections, Image, TextLine, TextLines


def call(reg, name, /, **args):
    return reg.get(name).invoke(args, reg)


# --- the box parser -------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, form, xyxy", [
    ('{"text": "33.90", "bbox": [0.5, 0.25, 0.75, 0.5]}', "normalized", (200, 150, 300, 300)),
    ('```json\n{"text": "33.90", "bbox": [500, 250, 750, 500]}\n```', "thousand", (200, 150, 300, 300)),
    ('{"bbox_2d": [1200, 150, 1300, 300], "label": "total"}', "pixel", (1200, 150, 1300, 300)),
    ('The answer is at [0.1, 0.1, 0.2, 0.2].', "normalized", (40, 60, 80, 120)),
    ('{"answer": {"text": "x", "box": {"x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0}}}', "normalized", (0, 0, 400, 600)),
])
def test_parse_box_reads_normalised_thousand_and_pixel_boxes(reply, form, xyxy):
    # given a reply in one of the three box forms, when parsed for the image the model saw
    width, height = (1600, 600) if form == "pixel" else (400, 600)
    box, _, used = vlm.parse_box(reply, width, height)
    # then the box is in that image's pixels and the form is named
    assert used == form
    assert box.xyxy == pytest.approx(xyxy)


def test_parse_box_keeps_the_answering_text():
    box, text, _ = vlm.parse_box('{"text": "TOTAL 33.90", "bbox": [0.1, 0.8, 0.9, 0.85]}', 459, 949)
    assert text == "TOTAL 33.90" and box.label == "TOTAL 33.90"


def test_parse_box_with_an_explicit_pixel_form_on_a_small_image():
    # 0-1000 and pixel boxes look alike when every number is <= 1000: the setting decides
    box, _, used = vlm.parse_box("[100, 200, 300, 400]", 459, 949, form="pixel")
    assert used == "pixel" and box.xyxy == (100, 200, 300, 400)


@pytest.mark.parametrize("reply", [
    "I cannot find the total.",
    '{"text": "33.90"}',
    "[0.1, 0.2, 0.3]",
    "",
    '{"bbox": ["a", "b", "c", "d"]}',
])
def test_parse_box_garbage_is_an_error_naming_what_was_received(reply):
    with pytest.raises(ToolError, match="holds no bounding box") as err:
        vlm.parse_box(reply, 400, 600)
    assert repr(reply.strip()[:200]) in err.value.message


@pytest.mark.parametrize("reply, why", [
    ("[0.8, 0.2, 0.4, 0.6]", "out of order"),
    ("[0.5, 0.5, 0.5, 0.9]", "out of order"),
    ("[1200, 100, 1500, 300]", "outside the 400x600 image"),
])
def test_parse_box_refuses_impossible_boxes(reply, why):
    with pytest.raises(ToolError, match=why):
        vlm.parse_box(reply, 400, 600)


def test_choose_matches_a_choice_or_says_what_was_answered():
    assert vlm.choose("Yes.", ["yes", "no"]) == "yes"
    with pytest.raises(ToolError, match="'maybe', which is none of the choices yes, no"):
        vlm.choose("maybe", ["yes", "no"])


# --- the locate tool ---------------------------------------------------------------------------------------

class FixedLocator(Backend):
    """TEST DOUBLE for ``locate``: returns a fixed box (in the given image's pixels), records its arguments."""

    tool, name, model, version = "locate", "fixed-locator-test-double", "fixed", "test"

    def __init__(self, boxes: list[Box]):
        self.boxes = boxes
        self.calls: list[dict] = []

    def availability(self) -> Availability:
        return Availability(True, "test double")

    def run(self, image: Image, question: str, context: str = "") -> Detections:
        self.calls.append({"question": question, "context": context, "size": image.size})
        return Detections(self.boxes, query=question, image_size=image.size)


@pytest.fixture
def bare() -> Registry:
    reg = Registry()
    register_builtin(reg)
    return reg


def test_locate_maps_the_box_of_a_crop_back_to_the_root(bare, make_image):
    # given a crop at (100, 50) and a backend answering in the crop's own pixels
    root = make_image(640, 480)
    crop = root.crop(Box(100, 50, 400, 350))
    backend = FixedLocator([Box(10, 20, 110, 60, label="TOTAL 3.90")])
    bare.add_backend(backend)
    # when locate runs on the crop
    dets, info = call(bare, "locate", image=crop, question="What is the total?", context="a receipt")
    # then the box is in root pixels, the context reached the backend, and the trace names it
    assert dets[0].xyxy == (110, 70, 210, 110) and dets[0].label == "TOTAL 3.90"
    assert backend.calls == [{"question": "What is the total?", "context": "a receipt", "size": (300, 300)}]
    assert info["backend"] == "fixed-locator-test-double"


@pytest.mark.parametrize("args, message", [
    ({"question": ""}, "locate needs a non-empty question"),
    ({"question": "   "}, "locate needs a non-empty question"),
    ({"question": 3}, "argument 'question' of locate expects str, got int"),
    ({"question": "q", "context": None}, "argument 'context' of locate expects str"),
    ({}, "missing required argument 'question'"),
])
def test_locate_rejects_invalid_arguments(bare, make_image, args, message):
    bare.add_backend(FixedLocator([Box(0, 0, 1, 1)]))
    with pytest.raises(ToolArgumentError, match=message):
        call(bare, "locate", image=make_image(64, 64), **args)


@pytest.mark.parametrize("boxes", [[], [Box(0, 0, 5, 5), Box(1, 1, 6, 6)]])
def test_locate_backend_must_give_exactly_one_box(bare, make_image, boxes):
    bare.add_backend(FixedLocator(boxes))
    with pytest.raises(ToolError, match=f"returned {len(boxes)} boxes, expected exactly one"):
        call(bare, "locate", image=make_image(64, 64), question="q")


def test_locate_without_a_backend_is_unavailable(bare, make_image):
    with pytest.raises(BackendUnavailable, match="tool 'locate' has no backend installed"):
        call(bare, "locate", image=make_image(64, 64), question="What is the total?")


def test_union_box_holds_every_box():
    assert union_box([Box(10, 10, 20, 20), Box(5, 15, 30, 18)], "a").xyxy == (5, 10, 30, 20)
    with pytest.raises(ToolError):
        union_box([])


# --- ask's context ------------------------------------------------------------------------------------------

def test_ask_passes_context_only_to_backends_that_take_it(add_answers, coco_image):
    # given a backend whose run has no context parameter (the existing contract)
    reg, backend = add_answers({"What is it?": "cats"})
    # when ask is given a context, then that backend still answers (from the image alone)
    value, _ = call(reg, "ask", image=coco_image, question="What is it?", context="two cats on a couch")
    assert value == "cats" and backend.asked == [("What is it?", [])]


# --- the vision-LLM backends against a scripted OpenAI-compatible server --------------------------------------

@pytest.fixture
def vlm_registry(bare, monkeypatch):
    """Built-in tools with the vlm backends only; returns a factory taking the scripted replies."""
    servers = []

    def make(replies: list[str]):
        server = ScriptedServer(replies).__enter__()
        servers.append(server)
        url = server.spec.removeprefix("openai:").split("#")[0]
        monkeypatch.setenv("VISTRACE_VLM_URL", url)
        monkeypatch.setenv("VISTRACE_VLM_MODEL", "scripted-vl")
        for b in vlm.backends():
            bare.add_backend(b)
        return bare, server

    yield make
    for s in servers:
        s.__exit__(None, None, None)


def _content(request: dict) -> tuple[str, list[str]]:
    parts = request["messages"][-1]["content"]
    text = " ".join(p["text"] for p in parts if p["type"] == "text")
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    return text, urls


def test_vlm_runs_the_three_textcot_stages(vlm_registry, make_image):
    # given a scripted vision LLM answering the overview, the box and the answer
    reg, server = vlm_registry(["A shop receipt.", '{"text": "9.00", "bbox": [0.25, 0.5, 0.5, 0.75]}', "RM 9.00"])
    image = make_image(800, 1200)
    # when the three stages run
    overview, info = call(reg, "caption", image=image)
    region, _ = call(reg, "locate", image=image, question="What is the total?", context=overview)
    patch = reg.get("zoom")(reg, image=image, box=region)
    answer, _ = call(reg, "ask", image=patch, question="What is the total?", context=overview)
    # then each request carried the image and the stage's instruction, and the box is in root pixels
    assert (overview, answer) == ("A shop receipt.", "RM 9.00")
    assert region[0].xyxy == (200, 600, 400, 900)
    assert info["backend"] == "vlm" and "scripted-vl" in info["model"]
    texts = [_content(r)[0] for r in server.requests]
    assert all(_content(r)[1][0].startswith("data:image/jpeg;base64,") for r in server.requests)
    assert "one sentence" in texts[0]
    assert "What is the total?" in texts[1] and '"bbox"' in texts[1] and "A shop receipt." in texts[1]
    assert "crop of a larger image, which shows: A shop receipt." in texts[2] and "short phrase" in texts[2]
    assert patch.size == (450, 450)  # 1.5 x the box's longer side (300 px), above the 448 px floor


def test_vlm_unparseable_box_is_an_error_naming_the_reply(vlm_registry, make_image):
    reg, _ = vlm_registry(["The total is at the bottom."])
    with pytest.raises(ToolError, match="received 'The total is at the bottom.'"):
        call(reg, "locate", image=make_image(300, 300), question="What is the total?")


def test_vlm_with_choices_must_answer_one(vlm_registry, make_image):
    reg, server = vlm_registry(["No", "perhaps"])
    assert call(reg, "ask", image=make_image(64, 64), question="Is it red?", choices="yes,no")[0] == "no"
    assert "exactly one of: yes, no" in _content(server.requests[0])[0]
    with pytest.raises(ToolError, match="none of the choices"):
        call(reg, "ask", image=make_image(64, 64), question="Is it red?", choices="yes,no")


def test_vlm_unconfigured_is_unavailable_with_the_fix(bare, make_image, monkeypatch, tmp_path):
    # given no [backends.vlm] table anywhere and no VISTRACE_VLM_* variables
    for name in ("VISTRACE_VLM_URL", "VISTRACE_VLM_MODEL", "VISTRACE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path))
    for b in vlm.backends():
        bare.add_backend(b)
    with pytest.raises(BackendUnavailable, match="vision LLM not configured: url and model unset") as err:
        call(bare, "caption", image=make_image(64, 64))
    assert "VISTRACE_VLM_URL" in (err.value.fix or "")


@pytest.mark.parametrize("env, reason", [
    ({"VISTRACE_VLM_URL": "ftp://x", "VISTRACE_VLM_MODEL": "m"}, "must start with http"),
    ({"VISTRACE_VLM_URL": "http://127.0.0.1:9/v1", "VISTRACE_VLM_MODEL": "m", "VISTRACE_VLM_BOX_FORMAT": "inches"},
     "box_format"),
])
def test_vlm_bad_settings_are_named(monkeypatch, env, reason):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    a = vlm.VlmLocate().availability()
    assert not a.ok and reason in a.reason


# --- the offline backends: pure pieces -------------------------------------------------------------------------

def test_line_grammar_lists_every_line_number_longest_first():
    g = offline.line_grammar(12)
    assert g.startswith('root ::= line (", " line)?\n')
    assert 'line ::= "12" | "11" | "10" | "9"' in g and g.rstrip().endswith('"1"')


@pytest.mark.parametrize("reply, count, picked", [("3", 5, [3]), ("2, 3", 5, [2, 3]), ("Line 4", 9, [4]), ("4, 4", 9, [4])])
def test_parse_line_choice_reads_valid_numbers(reply, count, picked):
    assert offline.parse_line_choice(reply, count) == picked


@pytest.mark.parametrize("reply, count, message", [
    ("none", 5, "names no line number"),
    ("7", 5, "named line 7, but there are only 5 lines"),
    ("0", 5, "named line 0"),
    ("1, 2, 3", 5, "named 3 lines"),
])
def test_parse_line_choice_refuses_invalid_replies(reply, count, message):
    with pytest.raises(ToolError, match=message):
        offline.parse_line_choice(reply, count)


def test_numbered_lines_give_text_with_page_positions():
    lines = TextLines([TextLine("MR DIY", Box(50, 95, 300, 110)), TextLine("TOTAL 33.90", Box(230, 760, 400, 780))])
    assert offline.numbered_lines(lines, (459, 949)) == "1. [y 10%, x 11%] MR DIY\n2. [y 80%, x 50%] TOTAL 33.90"


@pytest.mark.parametrize("size, out", [((448, 448), (896, 896)), ((300, 200), (600, 400)), ((900, 1600), None)])
def test_read_size_enlarges_small_crops_at_most_twice(size, out):
    assert offline.read_size(size) == out


@pytest.mark.parametrize("reply, answer", [('"33.90"', "33.90"), ("Answer: RM 9.00\nmore", "RM 9.00"),
                                           ("The answer is: 12/01/2019", "12/01/2019"), ("  \n", "")])
def test_clean_answer(reply, answer):
    assert offline.clean_answer(reply) == answer


def test_prompts_carry_the_question_lines_and_context():
    (_, locate_user), = offline.locate_messages("What is the total?", "1. [y 1%, x 2%] A")[1:]
    assert "What is the total?" in locate_user and "1. [y 1%, x 2%] A" in locate_user
    (_, ask_user), = offline.answer_messages("Q?", "1. [y 1%, x 2%] A", "a receipt")[1:]
    assert "zoomed-in part of a larger image. The whole image: a receipt" in ask_user
    assert ask_user.split("\n\n")[0] == locate_user.split("\n\n")[0]  # the same prefix: llama.cpp reuses it
    assert "zoomed-in" not in offline.answer_messages("Q?", "x")[1][1]
    (_, cap_user), = offline.caption_messages(["menu"], ["1 person"], ["MR DIY"], 40)[1:]
    assert "menu" in cap_user and "1 person" in cap_user and "40 lines" in cap_user and "MR DIY" in cap_user


# --- the offline backends on a real receipt ---------------------------------------------------------------------

@pytest.fixture
def receipt() -> Image:
    return Image.open(shared("sroie/img/002.jpg"))


@pytest.fixture
def offline_registry(monkeypatch):
    """The default tools and offline experts (real OCR, detector, classifier)."""
    from vistrace.tools.experts import register_experts

    reg = Registry()
    register_builtin(reg)
    register_experts(reg)
    return reg


def _with_llm(reg, llm, tool):
    """Put an offline backend whose LLM is ``llm`` (a test double or a real client) first for ``tool``."""
    cls = {"caption": offline.OfflineCaption, "locate": offline.OfflineLocate, "ask": offline.OfflineAsk}[tool]
    backend = cls(llm=llm)
    t = reg.get(tool)
    t.backends[:] = [backend]
    return backend


def test_offline_locate_unites_the_lines_the_llm_picks(offline_registry, receipt):
    # given the real OCR of receipt 002 and an LLM that names two lines
    lines = offline_registry.get("ocr")(offline_registry, image=receipt)
    total = next(i for i, ln in enumerate(lines, 1) if "33.90" in ln.text and "TOTAL" in ln.text.upper())
    llm = ScriptedLLM([f"{total}, {total + 1}"], supports_grammar=True)
    _with_llm(offline_registry, llm, "locate")
    # when locate runs
    dets, info = call(offline_registry, "locate", image=receipt, question="What is the total?")
    # then the box is the union of those two OCR lines, the prompt was layout-aware and grammar-constrained
    assert dets[0].xyxy == union_box([lines[total - 1].box, lines[total].box]).xyxy
    prompt = llm.calls[0].last_user
    assert f"{total}. [y " in prompt and "What is the total?" in prompt
    assert llm.calls[0].grammar == offline.line_grammar(len(lines))
    assert info["backend"] == "textcot_offline" and "ocr: rapidocr" in info["reason"]


def test_offline_ask_rereads_a_small_crop_enlarged(offline_registry, receipt):
    # given TextCoT's 448 px crop around the total and an LLM that answers
    llm = ScriptedLLM(["33.90"])
    _with_llm(offline_registry, llm, "ask")
    patch = receipt.crop(Box(0, 600, 448, 948))
    # when ask runs on the crop with the overview
    value, info = call(offline_registry, "ask", image=patch, question="What is the total?", context="A receipt.")
    # then the LLM saw the crop's text (read at 896 px) with the context, and answered
    prompt = llm.calls[0].last_user
    assert value == "33.90" and "33.90" in prompt and "The whole image: A receipt." in prompt
    assert "MR D" not in prompt  # the store name is above the crop
    assert "textcot_offline" == info["backend"]


def test_offline_ask_refuses_choices(offline_registry, receipt):
    _with_llm(offline_registry, ScriptedLLM([]), "ask")
    with pytest.raises(BackendUnavailable, match="for a choice among answers configure a VQA model"):
        call(offline_registry, "ask", image=receipt, question="Is it a receipt?", choices="yes,no")


def test_offline_ask_on_an_image_without_text_is_an_error(offline_registry, make_image):
    _with_llm(offline_registry, ScriptedLLM([]), "ask")
    with pytest.raises(ToolError, match="OCR found none"):
        call(offline_registry, "ask", image=make_image(200, 200), question="What colour is it?")


def test_offline_backend_names_a_bad_llm_setting(monkeypatch):
    monkeypatch.setenv("VISTRACE_TEXTCOT_OFFLINE_LLM", "remote:thing")
    a = offline.OfflineAsk().availability()
    assert not a.ok and "LLM 'remote:thing' cannot be used" in a.reason


@pytest.mark.slow
def test_offline_stages_with_the_real_local_llm(offline_registry, receipt):
    """Given receipt 002 and the local Qwen 0.5B, when the three offline stages run, then each answers
    in its form: a sentence, one box around OCR lines, a short answer; the trace names the model."""
    from vistrace.agent.llm import make_llm

    llm = make_llm("local")
    for tool in ("caption", "locate", "ask"):
        _with_llm(offline_registry, llm, tool)
    overview, cap_info = call(offline_registry, "caption", image=receipt)
    assert len(overview.split()) >= 3
    assert "local:qwen-0.5b" in cap_info["model"] or "local" in cap_info["model"]
    lines = offline_registry.get("ocr")(offline_registry, image=receipt)
    dets, _ = call(offline_registry, "locate", image=receipt, question="What is the total?", context=overview)
    assert len(dets) == 1
    assert any(dets[0].x1 <= ln.box.x1 and ln.box.x2 <= dets[0].x2 + 0.01 and dets[0].y1 <= ln.box.y1 for ln in lines)
    patch = offline_registry.get("zoom")(offline_registry, image=receipt, box=dets)
    answer, _ = call(offline_registry, "ask", image=patch, question="What is the total?", context=overview)
    assert answer and len(answer) < 80
    json.dumps({"overview": overview, "answer": answer})
