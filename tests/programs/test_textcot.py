"""The TextCoT family: the program, the SROIE evaluation set and its answer-matching rules.

Deterministic runs use a scripted OpenAI-compatible vision server (the vlm backends); the slow test
runs one receipt question through the offline backends with the real local LLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vistrace.programs import library
from vistrace.programs.families.textcot import (
    FIELDS,
    QUESTIONS,
    amounts,
    company_key,
    dates,
    matches,
    textcot_set,
)
from vistrace.sandbox import errors

import vistrace
from tests.agent.scripted_server import ScriptedServer
from tests.conftest import shared
from vistrace.errors import InputError
from vistrace.evaluate import EvalSet, ItemResult, run_eval

# --- matching rules -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, answer, expected", [
    ("total", "33.90", "33.90"),
    ("total", "RM 33.90", "33.90"),
    ("total", "TOTAL: RM33.90", "33.90"),
    ("total", "3.90", "RM 3.90"),
    ("total", "$8.20", "$8.20"),
    ("total", "9", "9.00"),
    ("total", "33. 90", "33.90"),
    ("total", "1,234.50", "1234.50"),
    ("total", "Total 33.90, paid 33.90", "33.90"),
    ("date", "12-01-19", "12-01-19"),
    ("date", "12/01/2019", "12-01-19"),
    ("date", "Date: 12.01.2019 10:30", "12-01-19"),
    ("date", "3 March 2018", "03 MAR 2018"),
    ("date", "2016-05-01", "2016/05/01"),
    ("date", "01/05/2016", "2016/05/01"),
    ("date", "Mar 3, 2018", "03 MAR 2018"),
    ("company", "MR DIY (JOHOR) SDN. BHD.", "MR D.I.Y. (JOHOR) SDN BHD"),
    ("company", "mr d.i.y. (johor) sdn bhd", "MR D.I.Y. (JOHOR) SDN BHD"),
])
def test_answers_that_match(field, answer, expected):
    assert matches(field, answer, expected)


@pytest.mark.parametrize("field, answer, expected", [
    ("total", "33.92", "33.90"),
    ("total", "13.90", "3.90"),
    ("total", "33.90 or 30.00", "33.90"),   # two different amounts: not one answer
    ("total", "", "33.90"),
    ("total", "thirty", "33.90"),
    ("date", "01/12/2019", "12-01-19"),     # day first: 1 December is not 12 January
    ("date", "12-01-19 or 13-01-19", "12-01-19"),
    ("date", "21", "12-01-19"),
    ("company", "MR DIY", "MR D.I.Y. (JOHOR) SDN BHD"),
    ("company", "", "MR D.I.Y. (JOHOR) SDN BHD"),
])
def test_answers_that_do_not_match(field, answer, expected):
    assert not matches(field, answer, expected)


def test_the_rules_read_amounts_dates_and_names():
    assert [str(a) for a in amounts("Total RM 1,234.50 (MYR 3)")] == ["1234.50", "3"]
    assert dates("30/04/2017 and 2016/05/01") == [(2017, 4, 30), (2016, 5, 1)]
    assert company_key(" Restoran  Wan-Sheng ") == "RESTORANWANSHENG"


def test_an_unknown_field_has_no_rule():
    with pytest.raises(InputError, match="no matching rule for field 'tip'"):
        matches("tip", "1", "1")


def test_every_sroie_key_satisfies_its_own_rule():
    # given the 20 keys, when each is compared with itself, then it matches (the rules read every form used)
    for key_file in sorted(shared("sroie/key").glob("*.json")):
        key = json.loads(key_file.read_text())
        for field in FIELDS:
            assert matches(field, key[field], key[field]), (key_file.name, field, key[field])


# --- the program --------------------------------------------------------------------------------------------

def test_textcot_programs_check_clean():
    progs = library()
    for name in ("textcot", "textcot_baseline"):
        assert errors(vistrace.check(progs[name])) == [], name
    assert progs["textcot"].startswith("def textcot(image: Image, question: str) -> str:")


@pytest.fixture
def scripted_vlm(monkeypatch):
    """A scripted OpenAI-compatible vision server configured as [backends.vlm]; yields a factory."""
    servers = []

    def start(replies: list[str]) -> ScriptedServer:
        server = ScriptedServer(replies).__enter__()
        servers.append(server)
        monkeypatch.setenv("VISTRACE_VLM_URL", server.spec.removeprefix("openai:").split("#")[0])
        monkeypatch.setenv("VISTRACE_VLM_MODEL", "scripted-vl")
        return server

    yield start
    for s in servers:
        s.__exit__(None, None, None)


RECEIPT_REPLIES = ["A shop receipt from MR D.I.Y.", '{"text": "33.90", "bbox": [0.55, 0.80, 0.95, 0.83]}', "RM 33.90"]


def test_textcot_program_runs_the_four_steps_with_the_overview_as_context(scripted_vlm, tmp_path):
    # given receipt 002 and a scripted vision LLM
    server = scripted_vlm(list(RECEIPT_REPLIES))
    image = shared("sroie/img/002.jpg")
    # when the library program runs
    run = vistrace.run(library()["textcot"], cache=False, image=image, question="What is the total?")
    # then overview, locate, zoom and ask ran in order, the crop is TextCoT's square, the answer is the model's
    assert run.ok, run.error
    assert [s.tool for s in run.trace.steps] == ["caption", "locate", "zoom", "ask"]
    assert run.value == "RM 33.90"
    zoom = run.trace.steps[2]
    assert "448x448" in str(zoom.output)  # 1.5 x 184 px < 448: the 448 px floor
    last = server.requests[-1]["messages"][-1]["content"]
    assert "crop of a larger image, which shows: A shop receipt from MR D.I.Y." in last[0]["text"]
    assert run.trace.steps[1].backend == "vlm" and "scripted-vl" in run.trace.steps[1].model
    assert run.save(tmp_path / "run").joinpath("trace.json").is_file()


def test_the_cli_runs_the_textcot_program(scripted_vlm, tmp_path):
    import subprocess
    import sys

    server = scripted_vlm(list(RECEIPT_REPLIES))
    cli = str(Path(sys.executable).parent / "vistrace")  # the console script of this environment
    out = subprocess.run([cli, "run", "programs/library/textcot.vp", "--image",
                          f"image={shared('sroie/img/002.jpg')}", "--arg", "question=What is the total?",
                          "--no-cache", "--out", str(tmp_path / "cli")],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2], timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr
    assert "RM 33.90" in out.stdout
    assert len(server.requests) == 3


# --- the evaluation set -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, data, kwargs, message", [
    ("docvqa", "sroie", {}, "unknown TextCoT set 'docvqa'"),
    ("sroie", "nowhere", {}, "SROIE data not found"),
    ("sroie", "sroie", {"fields": ["tip"]}, "unknown SROIE field"),
    ("sroie", "sroie", {"fields": []}, "unknown SROIE field"),
    ("sroie", "sroie", {"llm": "remote:x"}, "LLM spec 'remote:x' is not valid"),
])
def test_textcot_set_rejects_invalid_inputs(tmp_path, name, data, kwargs, message):
    folder = shared("sroie") if data == "sroie" else tmp_path / data
    with pytest.raises(InputError, match=message):
        textcot_set(name, folder, **kwargs)


def test_textcot_set_has_one_item_per_receipt_and_field():
    evalset = textcot_set("sroie", shared("sroie"))
    assert isinstance(evalset, EvalSet) and evalset.name == "textcot-sroie"
    items = evalset.items()
    assert len(items) == 20 * 3
    first = items[0]
    assert first.id == "002-total" and first.expected == "33.90"
    assert first.inputs["question"] == QUESTIONS["total"] and first.meta == {"receipt": "002", "field": "total"}
    assert [i.id for i in textcot_set("sroie", shared("sroie"), fields=["date"]).items()][:2] == ["002-date", "032-date"]


def test_metrics_aggregate_per_field_and_count_errors_as_wrong():
    evalset = textcot_set("sroie", shared("sroie"))
    results = [
        ItemResult("a-total", 1.0, {"correct": 1.0, "correct_baseline": 0.0, "latency_s": 4.0, "latency_baseline_s": 1.0},
                   {"field": "total"}),
        ItemResult("b-total", 0.0, {"correct": 0.0, "correct_baseline": 1.0, "latency_s": 2.0, "latency_baseline_s": 3.0},
                   {"field": "total"}),
        ItemResult("a-date", 1.0, {"correct": 1.0, "correct_baseline": 1.0, "latency_s": 3.0, "latency_baseline_s": 2.0},
                   {"field": "date"}),
        ItemResult("b-date", 0.0, error="InputError: unreadable"),
    ]
    m = evalset.metrics(results)
    assert m["accuracy"] == 0.5 and m["accuracy_baseline"] == 0.5
    assert m["accuracy_total"] == 0.5 and m["accuracy_baseline_total"] == 0.5
    assert m["accuracy_date"] == 0.5 and m["accuracy_baseline_date"] == 0.5 and m["accuracy_company"] == 0.0
    assert m["latency_s"] == 3.0 and m["latency_baseline_s"] == 2.0


def test_evaluating_an_item_saves_both_runs_and_scores_them(scripted_vlm, tmp_path):
    # given the scripted vision LLM: three TextCoT stages, then the baseline's answer
    scripted_vlm(RECEIPT_REPLIES + ["33.00"])
    evalset = textcot_set("sroie", shared("sroie"), fields=["total"])
    # when the first item (receipt 002's total) is evaluated through the runner
    summary = run_eval(evalset, tmp_path / "eval", limit=1, progress=False, command="test")
    # then both run folders are saved, TextCoT's 'RM 33.90' matches and the baseline's '33.00' does not
    folder = tmp_path / "eval" / "items" / "002-total"
    result = json.loads((folder / "result.json").read_text())
    assert result["runs"] == ["textcot", "baseline"]
    assert (folder / "textcot" / "trace.json").is_file() and (folder / "baseline" / "report.html").is_file()
    assert result["metrics"]["correct"] == 1.0 and result["metrics"]["correct_baseline"] == 0.0
    assert [m["module"] for m in result["modules"]] == ["textcot", "baseline"]
    assert summary.metrics["accuracy_total"] == 1.0 and summary.metrics["accuracy_baseline_total"] == 0.0
    assert summary.config["backends"]["locate"]["backend"] == "vlm"
    assert (tmp_path / "eval" / "report.html").is_file()


@pytest.mark.slow
def test_one_receipt_question_with_the_real_local_llm(tmp_path, monkeypatch):
    """Given the offline backends and the local Qwen 0.5B, when receipt 002's total is evaluated, then both
    runs finish with an answer and their traces name the LLM (the answer itself is the model's)."""
    monkeypatch.delenv("VISTRACE_VLM_URL", raising=False)
    evalset = textcot_set("sroie", shared("sroie"), llm="local", fields=["total"])
    summary = run_eval(evalset, tmp_path / "eval", limit=1, progress=False)
    result = json.loads((tmp_path / "eval" / "items" / "002-total" / "result.json").read_text())
    assert result["error"] is None and not result["fields"]["textcot"].startswith("error")
    trace = json.loads((tmp_path / "eval" / "items" / "002-total" / "textcot" / "trace.json").read_text())
    assert "local:qwen-0.5b" in trace["steps"][1]["model"]
    assert summary.config["llm"] == "local"
