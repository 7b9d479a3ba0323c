from __future__ import annotations

from rich.console import Console

from vistrace.trace import Trace, observation, render_rich
from vistrace.trace.record import StepError, StepRecord


def test_given_a_trace_when_rendered_with_rich_then_steps_and_error_show(recorder):
    trace = recorder.close()
    console = Console(record=True, width=200, color_system=None)
    console.print(render_rich(trace))
    text = console.export_text()
    assert "LOC" in text and "owlvit" in text and "hit" in text
    assert "2 detections: face [360,100,560,330] 0.91" in text   # brackets survive (not rich markup)
    assert "ToolError at line 7:9" in text and "ask a shorter question" in text
    assert "astronaut <demo>" in text


def test_given_a_successful_trace_when_rendered_then_the_result_shows(recorder):
    recorder.trace.error = None
    recorder.set_result(2)
    console = Console(record=True, width=160, color_system=None)
    console.print(recorder.close())         # Trace.__rich__
    text = console.export_text()
    assert "result" in text and "│ 2 " in text


def test_given_a_trace_when_observed_then_each_step_is_one_line_with_errors_located(recorder):
    obs = observation(recorder.close())
    lines = obs.splitlines()
    assert lines[0].startswith("step 1 line 1 BOX0=LOC(image=astronaut.png 1200x1000, object='face') -> 2 detections: face")
    assert any(ln.startswith("step 6 line 6 ANSWER0=COUNT(") and ln.endswith("-> 2") for ln in lines)
    err = [ln for ln in lines if "ERROR" in ln]
    assert len(err) == 1 and err[0].startswith("step 7 line 7 ")
    assert "ToolError at line 7:9: VQA model refused" in err[0] and "(hint: ask a shorter question)" in err[0]
    assert lines[-1].startswith("run failed at step 7")


def _long_trace(n: int = 60) -> Trace:
    steps = [StepRecord(id=i, line=i, call="LOC", target=f"B{i}", args={"image": "photo.png 640x480", "object": "cat"},
                        output="3 detections: " + ", ".join("cat [10,20,30,40] 0.9" for _ in range(5)))
             for i in range(1, n + 1)]
    steps[30].error = StepError(type="ToolError", message="detector crashed", line=31, col=4, hint="retry")
    steps[30].output = None
    return Trace(program="\n".join(f"B{i}=LOC(image=IMAGE,object='cat')" for i in range(1, n + 1)), steps=steps,
                 error=StepError(type="ToolError", message="detector crashed", line=31, col=4, hint="retry"))


def test_given_a_long_trace_when_observed_then_it_fits_and_keeps_the_errors():
    trace = _long_trace()
    obs = observation(trace, max_chars=1000)
    assert len(obs) <= 1000
    assert "step 31 line 31" in obs and "ToolError at line 31:5: detector crashed (hint: retry)" in obs
    assert "steps omitted" in obs
    assert obs.splitlines()[0].startswith("step 1 ")          # the beginning is kept
    assert "step 60 " in obs                                  # and the end
    assert obs.splitlines()[-1].startswith("run failed at step 31")


def test_given_a_tiny_budget_when_observed_then_the_limit_still_holds():
    for limit in (50, 200, 400):
        assert len(observation(_long_trace(), max_chars=limit)) <= limit


def test_given_an_error_without_location_when_observed_then_the_step_line_is_used():
    trace = Trace(steps=[StepRecord(id=1, line=4, col=2, call="f", error=StepError(type="ValueError", message="bad"))])
    assert "ValueError at line 4:3: bad" in observation(trace)
