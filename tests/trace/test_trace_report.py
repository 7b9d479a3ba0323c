from __future__ import annotations

import html
import json

from vistrace.trace import Trace, load_trace, render_html, save_run


def test_given_a_recorder_when_saved_then_the_run_folder_is_complete(recorder, tmp_path):
    run_dir = save_run(recorder, tmp_path / "run")

    trace = Trace.model_validate_json((run_dir / "trace.json").read_text())
    assert trace.comparable() == json.loads(json.dumps(recorder.trace.comparable()))   # tuples become lists
    assert trace.duration_s > 0
    assert trace.input_files == {"image": "inputs/image.png"}
    assert (run_dir / "inputs/image.png").is_file()
    assert trace.steps[0].artifacts == ["artifacts/step001.png"]
    for s in trace.steps:
        for rel in s.artifacts:
            assert (run_dir / rel).is_file()
    assert load_trace(run_dir) == trace
    assert json.loads((run_dir / "trace.json").read_text())["name"] == "astronaut <demo>"


def test_given_a_saved_run_when_reading_the_report_then_lines_link_to_step_cards(recorder, tmp_path):
    program = recorder.trace.program
    run_dir = save_run(recorder, tmp_path)
    page = (run_dir / "report.html").read_text()

    for s in recorder.trace.steps:
        assert f'id="step-{s.id}"' in page
        assert f'href="#step-{s.id}"' in page
        assert f'href="#L{s.line}"' in page
    for n in range(1, len(program.splitlines()) + 1):
        assert f'id="L{n}"' in page
    assert html.escape("BOX0=LOC(image=IMAGE,object='face')", quote=False).replace("'", "&#39;") in page
    assert 'src="artifacts/step001.png"' in page and 'href="artifacts/step001.png"' in page
    assert 'src="inputs/image.png"' in page
    assert "cache hit" in page
    assert "owlvit" in page and "google/owlvit-base-patch32" in page and "rev-abc" in page
    assert "open-vocabulary query" in page
    assert "http://" not in page and "https://" not in page   # self-contained: no CDN


def test_given_markup_in_the_program_when_reported_then_it_is_escaped(recorder, tmp_path):
    page = (save_run(recorder, tmp_path) / "report.html").read_text()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "astronaut &lt;demo&gt;" in page
    assert "&lt;b&gt;are&lt;/b&gt;" in page


def test_given_a_failing_step_when_reported_then_its_error_is_shown(recorder, tmp_path):
    page = (save_run(recorder, tmp_path) / "report.html").read_text()
    assert "ToolError" in page
    assert "VQA model refused the question &lt;script&gt;x&lt;/script&gt;" in page
    assert "hint: ask a shorter question" in page
    assert "line 7:9" in page
    assert 'class="step failed" id="step-7"' in page


def test_given_a_run_dir_when_rendering_for_a_notebook_then_pictures_are_inlined(recorder, tmp_path):
    save_run(recorder, tmp_path)
    inline = render_html(recorder.trace, tmp_path)
    assert "data:image/png;base64," in inline
    assert 'src="artifacts/' not in inline
    text_only = render_html(recorder.trace)
    assert "<img" not in text_only and 'id="step-3"' in text_only
    assert recorder.trace._repr_html_() == text_only


def test_given_a_trace_with_hostile_artifact_paths_when_reported_then_they_are_dropped(tmp_path):
    trace = Trace(program="x = f()", steps=[{"id": 1, "line": 1, "call": "f",
                                               "artifacts": ["javascript:alert(1)", "/etc/passwd", "../up.png",
                                                             "artifacts/ok.png"]}])
    page = (save_run(trace, tmp_path) / "report.html").read_text()
    assert "javascript:" not in page and "/etc/passwd" not in page and "../up.png" not in page
    assert 'src="artifacts/ok.png"' in page


def test_given_an_empty_trace_when_reported_then_it_still_renders(tmp_path):
    page = (save_run(Trace(), tmp_path) / "report.html").read_text()
    assert "no program text" in page and "No steps were run." in page


def test_given_a_recorder_saved_twice_when_the_folders_differ_then_both_are_complete(recorder, tmp_path):
    save_run(recorder, tmp_path / "a")
    b = save_run(recorder, tmp_path / "b")
    assert (b / "inputs/image.png").is_file() and (b / "artifacts/step001.png").is_file()


def test_given_a_large_input_when_inlined_then_it_is_downscaled(recorder, tmp_path):
    import base64
    import io
    import re

    from PIL import Image as PILImage

    save_run(recorder, tmp_path)
    page = render_html(recorder.trace, tmp_path)
    sizes = [PILImage.open(io.BytesIO(base64.b64decode(m))).size
             for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]
    assert sizes and max(max(s) for s in sizes) <= 768
