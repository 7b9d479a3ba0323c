"""Given the command line, when a user runs, checks, lists and replays programs, then exit codes and output
follow the contract: 0 success, 1 runtime error (trace still written), 2 rejected program or bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.tools.conftest import COCO_DIR, load_coco
from vistrace.cli import app

runner = CliRunner()
EXAMPLES = __import__("pathlib").Path(__file__).resolve().parents[2] / "examples"


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_run_prints_result_and_writes_run_folder(tmp_path):
    out = tmp_path / "run"
    res = invoke("run", EXAMPLES / "visprog_halves.vp", "--image", EXAMPLES / "images" / "astronaut.jpg", "--out", out)
    assert res.exit_code == 0, res.output
    assert "the right crop is at least as wide" in res.output
    assert (out / "report.html").is_file() and (out / "trace.json").is_file()


def test_run_json_and_named_inputs(tmp_path):
    load_coco()
    res = invoke("run", EXAMPLES / "coco_cats.vp", "--image", f"image={COCO_DIR / '000000039769.png'}",
                 "--arg", f"objects=@{COCO_DIR / '000000039769_annotations.json'}", "--json", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["ok"] and payload["value"].startswith("2 cats") and payload["steps"] == 6


def test_function_inputs_from_args(tmp_path):
    res = invoke("run", EXAMPLES / "textcot_zoom.vp", "-i", EXAMPLES / "images" / "astronaut.jpg",
                 "-a", "x1=10", "-a", "y1=10", "-a", "x2=50", "-a", "y2=60", "--out", tmp_path / "r")
    assert res.exit_code == 0, res.output
    assert "448x448" in res.output


def test_runtime_error_exits_1_and_keeps_the_trace(tmp_path):
    prog = tmp_path / "fails.vp"
    prog.write_text("answer = depth(image)\nresult = answer\n")
    res = invoke("run", prog, "--image", EXAMPLES / "images" / "chelsea.jpg", "--out", tmp_path / "r", "--no-cache")
    assert res.exit_code == 1
    assert "no backend" in res.output
    trace = json.loads((tmp_path / "r" / "trace.json").read_text())
    assert trace["error"]["type"] == "BackendUnavailable" and trace["steps"][0]["error"]


def test_rejected_program_exits_2_with_problems(tmp_path):
    prog = tmp_path / "bad.vp"
    prog.write_text("import os\nx = objDetect(image, 'dog')\n")
    for command in ("run", "check"):
        res = invoke(command, prog)
        assert res.exit_code == 2
        assert "line 1:1: import is not allowed" in res.output
        assert "did you mean 'objDet'?" in res.output


@pytest.mark.parametrize("args, message", [
    (["--image", "nope.png"], "image file not found: nope.png"),
    (["--image", "x=1.png", "--image", "y=2.png"], "image file not found"),
    (["--arg", "not-a-pair"], "--arg expects NAME=VALUE"),
    (["--limit", "bogus=3"], "unknown limit 'bogus'"),
    (["--limit", "steps=lots"], "limit 'steps' expects a number"),
])
def test_bad_input_exits_2_naming_it(args, message):
    res = invoke("run", EXAMPLES / "visprog_halves.vp", *args)
    assert res.exit_code == 2
    assert message in res.output


def test_unknown_input_name_lists_the_inputs(tmp_path):
    res = invoke("run", EXAMPLES / "visprog_halves.vp", "--image", f"PICTURE={EXAMPLES / 'images' / 'page.png'}")
    assert res.exit_code == 2 and "no input 'PICTURE'" in res.output and "IMAGE" in res.output


def test_limit_stops_the_run_with_exit_1(tmp_path):
    prog = tmp_path / "loop.vp"
    prog.write_text("x = 0\nwhile True:\n    x += 1\n")
    res = invoke("run", prog, "--limit", "loop_iterations=100", "--out", tmp_path / "r")
    assert res.exit_code == 1 and "max_loop_iterations" in res.output


def test_tools_lists_schemas_and_help():
    res = invoke("tools", "--json")
    tools = {t["name"]: t for t in json.loads(res.output)}
    assert {"crop", "zoom", "detect", "count_eval", "spatial"} <= set(tools)
    assert "LOC" in tools["loc"]["aliases"] and "objDet" in tools["detect"]["aliases"]
    assert tools["detect"]["parameters"]["required"] == ["image", "query"]
    res = invoke("tools", "zoom")
    assert "min_size: int (default 448)" in res.output


def test_replay_says_identical(tmp_path):
    out = tmp_path / "run"
    invoke("run", EXAMPLES / "visprog_halves.vp", "--image", EXAMPLES / "images" / "astronaut.jpg", "--out", out)
    res = invoke("replay", out)
    assert res.exit_code == 0 and "identical" in res.output
    res = invoke("replay", tmp_path)
    assert res.exit_code == 2 and "not a replayable run folder" in res.output


def test_import_and_help_stay_light():
    code = ("import sys, vistrace, vistrace.cli, vistrace.tools, vistrace.sandbox, vistrace.trace\n"
            "from typer.testing import CliRunner\n"
            "CliRunner().invoke(vistrace.cli.app, ['--help'])\n"
            "heavy = [m for m in ('torch', 'transformers', 'cv2', 'onnxruntime', 'numpy', 'PIL') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


@pytest.mark.parametrize("command", ["run", "check"])
@pytest.mark.parametrize("target, message", [("nope.vp", "program file not found: nope.vp"),
                                             (".", "expected a program file, got a directory")])
def test_missing_or_wrong_program_file_exits_2(command, target, message):
    res = invoke(command, target)
    assert res.exit_code == 2 and message in res.output


def test_trajectory_export_keeps_roles_apart(tmp_path):
    out = tmp_path / "run"
    invoke("run", EXAMPLES / "visprog_halves.vp", "--image", EXAMPLES / "images" / "astronaut.jpg", "--out", out)
    res = invoke("trajectory", out, "--question", "Which crop is wider?")
    assert res.exit_code == 0, res.output
    turns = json.loads(res.output)
    roles = [t["role"] for t in turns]
    assert roles[0] == "user" and roles[1] == "assistant" and roles[-1] == "assistant"
    assert roles.count("tool") == 3
    assert invoke("trajectory", tmp_path).exit_code == 2
