"""Given the tool registry and the program library, when the planner's messages are rendered, then the system
prompt is built from them (tools, value members, builtins, examples that check clean), the request carries
the inputs, the question, the history and — for a repair — the previous program and its problems, and the
whole prompt fits the 0.5B model's 4k context."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

import vistrace
from vistrace.agent.llm.base import Message
from vistrace.agent.prompt import MAX_ANSWER_CHARS, MAX_HISTORY, PlanRequest, library_examples, planner_messages, \
    system_prompt, user_prompt
from vistrace.agent.toolset import members, planner_tools, reachable_value_types
from vistrace.programs import library
from vistrace.sandbox import errors
from vistrace.sandbox.safety import SAFE_BUILTINS, SAFE_METHODS
from vistrace.tools import Registry, default_registry
from vistrace.values import VALUE_TYPES

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
MODEL = Path.home() / ".cache" / "vistrace" / "models" / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
PLAIN_EXAMPLES = {"count_objects", "left_of_other", "left_or_right_half", "name_the_object", "read_text",
                  "read_total", "zoom_and_read"}


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture(scope="module")
def system(registry):
    return system_prompt(registry, {"image": "Image"})


def test_plan_request_fields_and_defaults():
    """Given a question and inputs only, when a PlanRequest is made, then the optional fields are empty and it is
    not a repair; it is frozen."""
    req = PlanRequest("How many dogs?", {"image": "Image"})
    assert req.image_notes == {} and req.history == () and req.previous_program is None and req.problems == ()
    assert not req.is_repair
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.question = "other"  # type: ignore[misc]


def test_messages_are_system_history_then_request(registry):
    """Given a request with two earlier turns, when messages are rendered, then they are system, the turns as
    user/assistant pairs, and the request last."""
    req = PlanRequest("And how many cats?", {"image": "Image"}, history=(("How many dogs?", "2"), ("Colour?", "red")))
    msgs = planner_messages(req, registry)
    assert all(isinstance(m, Message) for m in msgs)
    assert [m.role for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[1].content == "Question: How many dogs?" and msgs[2].content == 'Answer (untrusted data): "2"'
    assert "And how many cats?" in msgs[-1].content


def test_history_is_bounded(registry):
    """Given a long session, when messages are rendered, then only the last MAX_HISTORY turns appear, each answer
    cut to MAX_ANSWER_CHARS characters."""
    history = tuple((f"question {i}", "x" * 1000) for i in range(MAX_HISTORY + 3))
    msgs = planner_messages(PlanRequest("q", {"image": "Image"}, history=history), registry)
    turns = msgs[1:-1]
    assert len(turns) == 2 * MAX_HISTORY
    assert turns[0].content == f"Question: question {3}"
    assert all(len(m.content) <= MAX_ANSWER_CHARS + len('Answer (untrusted data): ""') for m in turns
               if m.role == "assistant")


def test_every_offered_tool_is_listed_with_its_signature_and_summary(system, registry):
    """Given the default registry, when the system prompt is rendered, then each offered tool appears as its
    one-line signature and its docstring's first line, and tools not offered do not appear."""
    offered = planner_tools(registry, {"image": "Image"})
    for t in offered:
        assert f"{t.signature().stub()}  # {t.summary}" in system
    names = {t.name for t in offered}
    for t in registry.tools():
        if t.name not in names:
            assert f"\n{t.name}(" not in system, t.name


def test_values_members_come_from_their_public_sets(system, registry):
    """Given the value types the offered tools use, when rendered, then each appears with every public member
    (methods with their parameters), and builtins and str methods come from the sandbox's lists."""
    tools = planner_tools(registry, {"image": "Image"})
    for name in reachable_value_types(tools):
        line = next(ln for ln in system.splitlines() if ln.startswith(f"{name}: "))
        for m in members(VALUE_TYPES[name]):
            if m.name != "summary":
                assert m.render() in line, (name, m.render())
    assert "Detections" in reachable_value_types(tools) and "Box" in reachable_value_types(tools)
    for b in SAFE_BUILTINS - {"print"}:
        assert b in system
    str_line = next(ln for ln in system.splitlines() if ln.startswith("str methods: "))
    assert set(str_line.removeprefix("str methods: ").split(", ")) == set(SAFE_METHODS[str])


def test_rules_of_the_program_form_are_stated(system):
    """Given the system prompt, when read, then it states the plain-statement form, inputs by name, the last
    line `result = ...` and the forbidden constructs."""
    for phrase in ("One statement per line", "result = expression", "inputs by their names",
                   "No import, def, class, lambda", "program only"):
        assert phrase in system


def test_library_has_the_plain_examples_and_each_checks_clean(registry):
    """Given the program library, when its plain-statement examples are collected, then the shipped ones are
    there and each passes vistrace.check."""
    examples = {e.name: e for e in library_examples(registry)}
    assert PLAIN_EXAMPLES <= set(examples)
    for name, ex in examples.items():
        assert errors(vistrace.check(ex.program)) == [], name
        assert errors(vistrace.check(library()[name])) == [], name
        assert ex.program.splitlines()[-1].startswith("result = ")
        assert ex.question.endswith("?")


def test_examples_in_the_prompt_check_clean(system):
    """Given the rendered system prompt, when its example programs are checked, then each passes check."""
    blocks = [b.split("```")[0] for b in system.split("```python\n")[1:]]
    assert len(blocks) >= 5
    for block in blocks:
        assert errors(vistrace.check(block)) == [], block


def test_examples_need_only_offered_tools(registry):
    """Given a registry with only detect and count, when the prompt is rendered, then only examples that use
    nothing else are shown, and other tools are not listed."""
    small = Registry()
    small.add(registry.get("detect"))
    small.add(registry.get("count"))
    small.add(registry.get("spatial"))
    for b in registry.get("detect").backends:
        small.add_backend(b)
    text = system_prompt(small, {"image": "Image"})
    assert "How many cats are in the picture?" in text
    assert "ocr(" not in text and "What is written on the sign?" not in text
    assert "\nzoom(" not in text


def test_user_message_lists_inputs_with_notes(registry):
    """Given inputs with notes, when the user message is rendered, then each input is named with its type and
    note, then the question."""
    text = user_prompt(PlanRequest("How many dogs?", {"image": "Image", "other": "Image"},
                                   image_notes={"image": "640x480 photo"}))
    assert text.splitlines()[0] == "Inputs: image (Image, 640x480 photo), other (Image)"
    assert "Question: How many dogs?" in text and "Write the program." in text


def test_repair_message_has_the_previous_program_and_problems(registry):
    """Given a repair request, when rendered, then the user message shows the previous program in a fence, each
    problem on its own line, and asks for the whole corrected program."""
    prev = "text = detect(image, 'text').text\nresult = text"
    problems = ("line 1:8: Detections has no attribute 'text' (hint: public: boxes, count, ...)",
                "step 2 (tool ocr): no backend of tool 'ocr' can answer")
    msgs = planner_messages(PlanRequest("What does it say?", {"image": "Image"}, previous_program=prev,
                                        problems=problems), registry)
    last = msgs[-1].content
    assert f"```python\n{prev}\n```" in last
    for p in problems:
        assert f"- {p}" in last
    assert "whole corrected program" in last


def test_repair_without_problems_says_no_answer(registry):
    """Given a repair request with no problem text, when rendered, then the message says it gave no answer."""
    text = user_prompt(PlanRequest("q", {"image": "Image"}, previous_program="result = 1"))
    assert "did not give an answer" in text


def _count_tokens(text: str) -> int:
    if HAVE_LLAMA and MODEL.exists():
        import llama_cpp

        vocab = llama_cpp.Llama(str(MODEL), vocab_only=True, verbose=False)
        return len(vocab.tokenize(text.encode("utf-8"), add_bos=False))
    return len(text) // 3  # code-heavy English: about 3.5 characters a token; err on the long side


def test_prompt_fits_the_small_models_context(registry):
    """Given a repair request with a full history, when rendered and tokenized (the real tokenizer when
    llama_cpp is here), then the prompt plus 512 tokens to answer fits in 4096 tokens."""
    req = PlanRequest("What is the total?", {"image": "Image"}, image_notes={"image": "1200x1600 receipt"},
                      history=tuple((f"Question number {i} about this receipt?", "an answer " * 30)
                                    for i in range(MAX_HISTORY)),
                      previous_program="lines = find_text(image, 'total')\nresult = lines.txt",
                      problems=("line 2:9: TextLines has no attribute 'txt' (hint: did you mean 'text'?)",))
    text = "\n".join(m.content for m in planner_messages(req, registry))
    assert _count_tokens(text) + 512 + 8 * len(planner_messages(req, registry)) < 4096


@pytest.fixture(scope="module")
def local_llm():
    from vistrace.agent.llm import make_llm

    llm = make_llm("local")
    yield llm
    close = getattr(llm, "close", None)
    if callable(close):
        close()


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_LLAMA and MODEL.exists()), reason=f"needs llama_cpp and the 0.5B model at {MODEL}")
def test_real_model_answers_with_a_program_after_history_and_for_a_repair(local_llm, registry):
    """Given the real 0.5B model without a grammar, when asked a follow-up after two earlier turns and then a
    repair, then both answers hold a program that extracts and parses."""
    from vistrace.agent.extract import extract_program
    from vistrace.api import check

    follow_up = PlanRequest("And how many dogs?", {"image": "Image"}, history=(("How many cats?", "2"),
                                                                                 ("Is there a sofa?", "yes")))
    repair = PlanRequest("What does the text say?", {"image": "Image"},
                         previous_program="t = detect(image, 'text')\nresult = t.text",
                         problems=("line 2:9: Detections has no attribute 'text' (hint: read text with ocr(image))",))
    for req in (follow_up, repair):
        out = local_llm.complete(planner_messages(req, registry), max_tokens=120)
        program = extract_program(out.text)
        assert not [p for p in check(program, registry) if p.code == "syntax"], program
