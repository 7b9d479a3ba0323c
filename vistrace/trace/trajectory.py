"""A trace as a chat-format trajectory, the form used to train tool-using (vision) models.

The messages follow the OpenAI / Hugging Face chat conventions, with roles kept apart:

1. optional ``system`` turn;
2. ``user``: the question and a description of the inputs; ``content`` is a list of parts,
   ``{"type": "image", "image": "inputs/image.png"}`` for each saved input image, then
   ``{"type": "text", "text": ...}``;
3. ``assistant``: the program (a fenced code block) with one ``tool_calls`` entry per step
   (``id`` = ``"step-N"``, ``function.arguments`` = JSON of the arguments: plain ones as given,
   values such as images and boxes as their summaries);
4. one ``tool`` turn per step, in program order: ``tool_call_id``, ``name`` = the tool, ``content`` =
   JSON of the call, argument summaries and the output summary (plus the output's JSON when small)
   or the error;
5. ``assistant``: the answer (or what went wrong).

Everything is plain JSON data (``json.dumps`` works on the list).
"""

from __future__ import annotations

import json
from typing import Any

from .record import Trace
from .render import describe_input, format_error

QUESTION_KEYS = ("question", "query", "prompt", "instruction", "text")
MAX_VALUE_JSON = 2000   # output JSON longer than this stays out of the tool turn (the summary remains)


def _question(trace: Trace, question: str | None) -> str:
    if question:
        return str(question)
    for key in QUESTION_KEYS:
        value = trace.inputs.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return f"Run the visual program {trace.name!r}." if trace.name else "Answer using the given inputs."


def _tool_name(step) -> str:
    return step.tool or step.call or "operation"


def _arguments(step) -> dict[str, Any]:
    """Plain arguments as given (strings, numbers, booleans, None); values (images, boxes...) as summaries."""
    out: dict[str, Any] = {}
    for name, summary in step.args.items():
        raw = step.args_json.get(name, summary)
        out[name] = raw if raw is None or isinstance(raw, (str, int, float, bool)) else summary
    return out


def _tool_content(step) -> str:
    body: dict[str, Any] = {"step": step.id, "line": step.line, "call": step.call, "args": _arguments(step)}
    if step.error is not None:
        body["error"] = {"type": step.error.type, "message": step.error.message, "line": step.error.line,
                         "col": step.error.col, "hint": step.error.hint}
    else:
        body["output"] = step.output
        try:
            value = json.dumps(step.output_json)
        except (TypeError, ValueError):
            value = None
        if value is not None and len(value) <= MAX_VALUE_JSON:
            body["value"] = step.output_json
    return json.dumps(body, ensure_ascii=False)


def _answer(trace: Trace) -> str:
    if trace.error is not None:
        return f"The program failed: {format_error(trace.error)}"
    if trace.result_summary is not None:
        return trace.result_summary
    return json.dumps(trace.result, ensure_ascii=False, default=str)


def to_trajectory(trace: Trace, question: str | None = None, *, system: str | None = None) -> list[dict]:
    """The run as chat messages: [system?], user, assistant (program + tool_calls), tool per step, assistant.

    ``question`` defaults to a string input named question/query/prompt/instruction/text.
    """
    messages: list[dict[str, Any]] = []
    if system:
        messages.append({"role": "system", "content": str(system)})

    text = _question(trace, question)
    if trace.inputs:
        listed = "\n".join(f"- {name}: {describe_input(desc)}" for name, desc in trace.inputs.items())
        text = f"{text}\n\nInputs:\n{listed}"
    parts: list[dict[str, str]] = [{"type": "image", "image": path}
                                   for name, path in trace.input_files.items() if name in trace.inputs]
    parts.append({"type": "text", "text": text})
    messages.append({"role": "user", "content": parts})

    calls = [{"id": f"step-{s.id}", "type": "function",
              "function": {"name": _tool_name(s), "arguments": json.dumps(_arguments(s), ensure_ascii=False)}}
             for s in trace.steps]
    program = trace.program.rstrip("\n")
    assistant: dict[str, Any] = {"role": "assistant", "content": f"```python\n{program}\n```"}
    if calls:
        assistant["tool_calls"] = calls
    messages.append(assistant)

    for s in trace.steps:
        messages.append({"role": "tool", "tool_call_id": f"step-{s.id}", "name": _tool_name(s),
                         "content": _tool_content(s)})

    messages.append({"role": "assistant", "content": _answer(trace)})
    return messages
