"""Given the registry and the variables written so far, when the next statement's grammar is made, then it
lets through exactly the statements that use existing variables the way their types allow, calls tools with
their required arguments of the right types, keeps closed vocabularies, never re-assigns an input, a tool or
a keyword, accepts the library's programs line by line, and compiles with llama.cpp."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest
from vistrace.agent.gbnf import Recognizer, accepts, parse_gbnf
from vistrace.agent.prompt import library_examples
from vistrace.agent.toolset import planner_tools, tool_vocabulary
from vistrace.agent.typed_grammar import (
    name_rule,
    statement_grammar,
    tool_returns,
    typed_call_rules,
)
from vistrace.agent.typeview import expr_type
from vistrace.tools import Registry, default_registry, tool
from vistrace.tools.backends import Availability, Backend

from vistrace.values import Detections, Image

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
MODEL = Path.home() / ".cache" / "vistrace" / "models" / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
ENV = {"image": "Image", "dets": "Detections", "lines": "TextLines", "n": "int", "name": "str"}


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture(scope="module")
def tools(registry):
    return planner_tools(registry, {"image": "Image"})


@pytest.fixture(scope="module")
def next_line(registry, tools):
    return Recognizer(statement_grammar(registry, ENV, tools=tools))


@pytest.mark.parametrize("line", [
    "x = detect(image, 'cat')", "x = detect(image, query='cat, dog', threshold=0.3)", "x = crop(image, dets.best())",
    "x = crop(image, box=dets)", "x = zoom(image, dets, min_size=2)", "x = dets.count", "x = dets.labels[0].upper()",
    "x = lines.find('total')[0].text", "x = n + 1", "x = image.width / 2", "x = len(dets) > 0", "x = f'{n} cats'",
    "x = spatial(dets, detect(image, 'dog'), 'left')", "x = ocr(crop(image, dets[0])).text.split()",
    "x = classify(image).top", "x = region(image, 'TOP')", "x = count(dets)", "x = segment(image, box=dets)",
    "x = box(0, 0, image.width / 2, image.height)", "x = box(0, 0, 1, 1, label=name)", "x = find_text(image, name)",
    "x = 'yes' if dets else 'no'", "result = dets.count", "IMG2 = crop(image, dets)", "counts = 3",
])
def test_typed_statements_are_accepted(next_line, line):
    assert next_line.accepts(line + "\n") and next_line.accepts(line)


@pytest.mark.parametrize("line, why", [
    ("x = detect(image, 'face')", "not a COCO word"),
    ("x = detect(dets, 'cat')", "Detections where an Image goes"),
    ("x = crop(image, dets.names)", "Detections has no 'names'"),
    ("x = crop(image, dets.labels)", "a list of str where a box goes"),
    ("x = lines.find('total')[0].txt", "TextLine has no 'txt'"),
    ("x = foo + 1", "foo was never assigned"),
    ("x = spatial(image, dets, 'left')", "an Image where a box goes"),
    ("x = spatial(dets, dets)", "the required relation is missing"),
    ("x = crop(image)", "the required box is missing"),
    ("x = region(image, 'top')", "not one of the Literal values"),
    ("x = box('left', 0, 0, 1, 1)", "a str where a number goes"),
    ("x = zoom(image, dets, min_size=2.5)", "a float where an int goes"),
    ("x = find_text(image, n)", "an int where a str goes"),
    ("x = n.count", "nothing follows an int"),
    ("x = [b.label for b in dets]", "no comprehensions"),
    ("count = 3", "hides the tool count"),
    ("image = detect(image, 'cat')", "loses the input"),
    ("dets = 1", "re-assigns a variable"),
    ("def = 2", "a keyword"),
    ("len = 2", "a builtin"),
    ("Img = 2", "Capitalised: read as a type"),
    ("x = dets.count\ny = 1", "two statements"),
])
def test_mistakes_are_outside_the_grammar(next_line, line, why):
    assert not next_line.accepts(line + "\n"), why


def test_the_last_statement_must_be_result(registry, tools):
    g = Recognizer(statement_grammar(registry, ENV, tools=tools, last=True))
    assert g.accepts("result = dets.count\n") and not g.accepts("x = dets.count\n")


def test_every_library_example_is_accepted_line_by_line(registry, tools):
    """Given the library's plain-statement programs, when each line is recognised under the grammar for the
    variables before it, then every line is accepted (the typed grammar does not forbid what the examples teach)."""
    examples = library_examples(registry, tools)
    assert len(examples) >= 5
    returns = tool_returns(tools)
    for ex in examples:
        env = {"image": "Image"}
        for line in ex.program.strip().splitlines():
            assert accepts(statement_grammar(registry, env, tools=tools), line + "\n"), (ex.name, line)
            node = ast.parse(line).body[0]
            env[node.targets[0].id] = expr_type(node.value, env, returns)


def test_grammar_is_well_formed_for_every_env(registry, tools):
    for env in ({"image": "Image"}, ENV, {"image": "Image", "a": "any", "b": "list[Box]", "m": "Mask"}):
        rules = parse_gbnf(statement_grammar(registry, env, tools=tools))
        assert "root" in rules and "t-detect" in rules


def test_untyped_variables_still_have_every_member(registry, tools):
    g = Recognizer(statement_grammar(registry, {"image": "Image", "v": "any"}, tools=tools))
    assert g.accepts("x = v.anything_at_all\n") is False     # member names still come from the value types
    assert g.accepts("x = v.text.lower()\n") and g.accepts("x = crop(image, v)\n")


# --- the pieces -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, ok", [
    ("f(a)", True), ("f(a, b)", True), ("f(a, y=b)", True), ("f(x=a, y=b)", True), ("f(a, b, z=c)", True),
    ("f(a, y=b, z=c)", True), ("f()", False), ("f(y=b)", False), ("f(a, z=c)", True),
    ("f(a, b, c)", True), ("f(a, z=c, y=b)", False), ("f(a, b, c, d)", False), ("f(a, w=b)", False),
])
def test_typed_call_rules_need_the_required_parameters(text, ok):
    """Given f(x, y=1, z=2) — x required — when calls are recognised, then x must be given, arguments come
    positionally then by keyword in order, and unknown names are refused."""
    rules = typed_call_rules("f", "call-f", [("x", '"a"', True), ("y", '"b"', False), ("z", '"c"', False)])
    grammar = "root ::= call-f\nws ::= \" \"?\n" + "\n".join(f"{k} ::= {v}" for k, v in rules.items())
    assert accepts(grammar, text) is ok


def test_typed_call_rules_with_two_required():
    rules = typed_call_rules("g", "call-g", [("a", '"1"', True), ("b", '"2"', True), ("c", '"3"', False)])
    grammar = "root ::= call-g\nws ::= \" \"?\n" + "\n".join(f"{k} ::= {v}" for k, v in rules.items())
    assert accepts(grammar, "g(1, 2)") and accepts(grammar, "g(1, b=2)") and accepts(grammar, "g(a=1, b=2, c=3)")
    assert not accepts(grammar, "g(1)") and not accepts(grammar, "g(1, c=3)") and not accepts(grammar, "g(b=2)")


@pytest.mark.parametrize("name, ok", [
    ("count", False), ("counts", True), ("coun", True), ("c", True), ("image", False), ("image2", True),
    ("for", False), ("fo", True), ("format", True), ("x" * 32, True), ("x" * 33, False), ("DETS", True),
    ("Dets", False), ("_x", False), ("2x", False),
])
def test_new_names_leave_out_the_excluded_words(name, ok):
    rules = name_rule(["count", "image", "for", "If"])
    grammar = "root ::= new-name\n" + "\n".join(f"{k} ::= {v}" for k, v in rules.items())
    assert accepts(grammar, name) is ok


class _Closed(Backend):
    tool = "look"
    name = "closed"

    def availability(self) -> Availability:
        return Availability(True, "ready")

    def vocabulary(self):
        return {"query": ("cat", "dog", "traffic light")}

    def run(self, **args):  # pragma: no cover - grammar tests never run a tool
        raise AssertionError


class _Open(_Closed):
    name = "open"

    def vocabulary(self):
        return {}


class _Gone(_Open):
    name = "gone"

    def availability(self) -> Availability:
        return Availability(False, "no weights")


@tool(category="expert", expert=True)
def look(image: Image, query: str, backend: Backend = None) -> Detections:
    """Find things (a test tool)."""
    raise AssertionError


def _look_registry(*backends) -> Registry:
    reg = Registry()
    reg.add(look)
    for b in backends:
        reg.add_backend(b)
    return reg


@pytest.mark.parametrize("backends, vocab", [
    ((_Closed(),), ("cat", "dog", "traffic light")),
    ((_Closed(), _Gone()), ("cat", "dog", "traffic light")),   # an unavailable open backend does not open it
    ((_Closed(), _Open()), None),                             # an available one does
])
def test_vocabulary_is_closed_only_when_every_available_backend_is(backends, vocab):
    reg = _look_registry(*backends)
    assert tool_vocabulary(reg.get("look"), "query") == vocab
    g = Recognizer(statement_grammar(reg, {"image": "Image"}))
    assert g.accepts("x = look(image, 'cat, traffic light')\n")
    assert g.accepts("x = look(image, 'face')\n") is (vocab is None)


def test_default_detect_speaks_coco(registry):
    vocab = tool_vocabulary(registry.get("detect"), "query")
    assert vocab is not None and "traffic light" in vocab and "sofa" in vocab and "face" not in vocab


# --- llama.cpp ------------------------------------------------------------------------------------

@pytest.mark.skipif(not (HAVE_LLAMA and MODEL.exists()), reason=f"needs llama_cpp and the 0.5B model at {MODEL}")
def test_statement_grammars_compile_with_llama_cpp(registry, tools):
    import llama_cpp
    from vistrace.agent.grammar import compile_check

    vocab = llama_cpp.Llama(str(MODEL), vocab_only=True, verbose=False)
    for env, last in (({"image": "Image"}, False), (ENV, False), (ENV, True), ({"image": "Image", "v": "any"}, False)):
        compile_check(statement_grammar(registry, env, tools=tools, last=last), vocab)


@pytest.mark.slow
@pytest.mark.skipif(not (HAVE_LLAMA and MODEL.exists()), reason=f"needs llama_cpp and the 0.5B model at {MODEL}")
@pytest.mark.parametrize("question", ["How many cats are in the picture?", "What does the text in the image say?",
                                      "Is the dog to the left of the person?", "What is the total on this receipt?"])
def test_real_model_writes_programs_that_check_clean(registry, tools, question):
    """Given the real 0.5B model planning one typed statement at a time, when it answers a question, then the
    program ends with `result`, and check finds no error at all: no unknown name, tool, argument or member,
    no missing argument and no wrong argument type."""
    from vistrace.agent.llm import make_llm
    from vistrace.agent.prompt import PlanRequest, planner_messages
    from vistrace.agent.stepwise import plan_statements
    from vistrace.api import check

    llm = make_llm("local")
    inputs = {"image": "Image"}
    out = plan_statements(llm, planner_messages(PlanRequest(question, inputs), registry), registry, tools, inputs)
    assert out.finish_reason == "stop" and out.text.splitlines()[-1].startswith("result"), out.text
    assert not [str(p) for p in check(out.text, registry) if p.severity == "error"], out.text
