from __future__ import annotations

import json

from vistrace.trace import save_run, to_trajectory


def test_given_a_trace_when_exported_then_turns_come_in_role_order(recorder, tmp_path):
    save_run(recorder, tmp_path)
    msgs = to_trajectory(recorder.trace)
    json.dumps(msgs)                                        # JSON-serialisable

    roles = [m["role"] for m in msgs]
    n = len(recorder.trace.steps)
    assert roles == ["user", "assistant"] + ["tool"] * n + ["assistant"]

    user = msgs[0]["content"]
    assert user[0] == {"type": "image", "image": "inputs/image.png"}
    assert user[-1]["type"] == "text" and user[-1]["text"].startswith("How many eyes <b>are</b> visible?")
    assert "image: astronaut.png 1200x1000" in user[-1]["text"]

    program = msgs[1]
    assert "BOX0=LOC(image=IMAGE,object='face')" in program["content"]
    assert [c["id"] for c in program["tool_calls"]] == [f"step-{i}" for i in range(1, n + 1)]
    assert program["tool_calls"][0]["function"]["name"] == "detect"
    assert json.loads(program["tool_calls"][0]["function"]["arguments"])["object"] == "face"

    tools = msgs[2:-1]
    assert [t["tool_call_id"] for t in tools] == [c["id"] for c in program["tool_calls"]]
    first = json.loads(tools[0]["content"])
    assert first["output"].startswith("2 detections") and first["value"]["type"] == "Detections"
    failed = json.loads(tools[-1]["content"])
    assert failed["error"]["type"] == "ToolError" and failed["error"]["hint"] == "ask a shorter question"
    assert "output" not in failed

    assert msgs[-1]["content"].startswith("The program failed: ToolError at line 7:9")


def test_given_an_explicit_question_and_system_when_exported_then_they_are_used(recorder):
    recorder.trace.error = None
    recorder.set_result(2)
    msgs = to_trajectory(recorder.close(), "Count the eyes.", system="You write visual programs.")
    assert [m["role"] for m in msgs[:2]] == ["system", "user"]
    assert msgs[1]["content"] == [{"type": "text", "text": msgs[1]["content"][-1]["text"]}]   # no saved images
    assert msgs[1]["content"][-1]["text"].startswith("Count the eyes.")
    assert msgs[-1] == {"role": "assistant", "content": "2"}
