"""Given the tool registry, when the planner's GBNF grammar is generated, then it accepts the library's
plain-statement programs and other real programs, rejects unknown tools, unknown argument names and other
things outside the form, compiles with llama.cpp, and constrains the real 0.5B model to programs whose
tool calls check clean."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vistrace.agent.gbnf import GrammarSyntaxError, Recognizer, accepts, parse_gbnf
from vistrace.agent.grammar import MAX_NAME, MAX_STATEMENTS, MAX_STRING, GrammarRejected, compile_check, \
    program_grammar, request_grammar
from vistrace.agent.prompt import PlanRequest, library_examples, planner_messages
from vistrace.agent.toolset import LEFT_OUT_CATEGORIES, planner_tools, tool_available
from vistrace.tools import Registry, default_registry, tool
from vistrace.tools.backends import Availability, Backend
from vistrace.values import Detections, Image

HAVE_LLAMA = importlib.util.find_spec("llama_cpp") is not None
MODEL = Path.home() / ".cache" / "vistrace" / "models" / "gguf" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"


@pytest.fixture(scope="module")
def registry():
    return default_registry()


@pytest.fixture(scope="module")
def grammar(registry):
    return program_grammar(registry, ["image"])


@pytest.fixture(scope="module")
def recognizer(grammar):
    return Recognizer(grammar)


# --- the recogniser itself -------------------------------------------------------------------

@pytest.mark.parametrize("gbnf, text, ok", [
    ('root ::= "a" | "b"', "b", True),
    ('root ::= "a" | "b"', "c", False),
    ('root ::= [a-c]+ "!"', "abca!", True),
    ('root ::= [^x]*', "abc", True),
    ('root ::= [^x]*', "axc", False),
    ('root ::= "\\n" [\\\\]', "\n\\", True),
    ('root ::= "a"{2,3}', "aaa", True),
    ('root ::= "a"{2,3}', "aaaa", False),
    ('root ::= "a"{2}', "a", False),
    ('root ::= x y?\nx ::= "x" # a comment\ny ::= ("y"\n  | "z")', "xz", True),
    ('root ::= ("a" | "ab") "c"', "abc", True),
], ids=lambda v: repr(v)[:30])
def test_recognizer_matches_gbnf(gbnf, text, ok):
    """Given a small GBNF grammar, when a text is recognised, then the answer follows GBNF's meaning
    (ambiguity, counts, classes, escapes, comments, continued lines included)."""
    assert accepts(gbnf, text) is ok


@pytest.mark.parametrize("gbnf, message", [
    ('x ::= "a"', "no 'root'"),
    ('root ::= y', "undefined rule 'y'"),
    ('root ::= "a', "not closed"),
    ('root ::= [ab', "not closed"),
    ('root := "a"', "expected '::='"),
    ('root ::= "a"\nroot ::= "b"', "defined twice"),
], ids=["no root", "undefined", "string", "class", "operator", "twice"])
def test_recognizer_rejects_bad_grammars(gbnf, message):
    """Given a malformed grammar, when it is read, then GrammarSyntaxError names the problem."""
    with pytest.raises(GrammarSyntaxError, match=message):
        parse_gbnf(gbnf)


# --- the program grammar ---------------------------------------------------------------------

def test_grammar_is_well_formed(grammar, registry):
    """Given the default registry, when the grammar is generated, then every rule it uses is defined and each
    offered tool has a call rule."""
    rules = parse_gbnf(grammar)
    for t in planner_tools(registry):
        assert f"t-{t.name.replace('_', '-')}" in rules


def test_every_library_example_is_accepted(recognizer, registry):
    """Given the library's plain-statement programs (the prompt's examples), when recognised, then each is
    accepted, bare and inside a python fence."""
    examples = library_examples(registry, planner_tools(registry))
    assert len(examples) >= 5
    for ex in examples:
        assert recognizer.accepts(ex.program + "\n"), ex.name
        assert recognizer.accepts(ex.program), ex.name
        assert recognizer.accepts(f"```python\n{ex.program}\n```"), ex.name


def test_the_prompt_examples_are_accepted(recognizer, registry):
    """Given the rendered system prompt, when its example programs are recognised, then each is accepted."""
    system = planner_messages(PlanRequest("How many dogs?", {"image": "Image"}), registry)[0].content
    blocks = system.split("```python\n")[1:]
    assert blocks
    for block in blocks:
        assert recognizer.accepts(block.split("```")[0]), block


ACCEPTED = {
    "keywords": "dogs = detect(image, query='dog', threshold=0.3)\nresult = dogs.count",
    "all keywords": "dogs = detect(threshold=0.3, image=image, query='dog')\nresult = len(dogs)",
    "f-string": "dogs = detect(image, 'dog')\nresult = f\"{dogs.count} dogs, best {dogs.best().score:.2f}\"",
    "comprehension": "dets = detect(image, 'cat,dog')\nresult = [b.label for b in dets if b.score > 0.5]",
    "slices and negatives": "dets = detect(image, 'cat')\nresult = dets[-1].xyxy[:2]",
    "ternary and boolean ops": "a = detect(image, 'cat')\nresult = 'yes' if a.count > 1 and not a.count > 5 else 'no'",
    "method keyword": "a = detect(image, 'cat').sorted_by(key='area', descending=False)\nresult = a.first()",
    "tuple and dict": "result = {'n': (1, 2.5, -3e2), 'ok': True, 'none': None}",
    "string escapes": "result = find_text(image, 'it\\'s \"here\"').text",
    "literal parameter": "half = region(image, 'LEFT')\nresult = crop(image, half)",
    "str methods": "t = ocr(image).text\nresult = t.lower().split()[0].strip()",
    "in and is": "t = ocr(image)\nresult = 'total' in t.text.lower() is not None",
    "arithmetic": "b = detect(image, 'cat').best()\nresult = (b.x2 - b.x1) * 2 // 3 % 5 + b.area ** 0.5 / 2",
    "visprog alias line": "BOX0=LOC(image=image,object='cat')\nresult=COUNT(box=BOX0)",
    "vpeval objDet alias": "result = count(objDet(image, 'dog'))",
    "builtins with keywords": "d = detect(image, 'cat')\nresult = sorted(d.scores, reverse=True)[:3]",
    "fenced": "```python\nresult = ocr(image).text\n```\n",
}


@pytest.mark.parametrize("program", list(ACCEPTED.values()), ids=list(ACCEPTED))
def test_real_programs_are_accepted(recognizer, program):
    """Given programs in the planner's form, when recognised, then the grammar accepts them."""
    assert recognizer.accepts(program)


REJECTED = {
    "unknown tool": "result = find_objects(image, 'dog')",
    "unknown keyword": "result = detect(image, label='dog')",
    "keyword for a positional already given": "result = detect(image, image=image)",
    "too many positional arguments": "result = count(a, b)",
    "literal where an image goes": "result = detect('dog', image)",
    "literal parameter outside its values": "result = region(image, 'MIDDLE')",
    "unknown member": "d = detect(image, 'dog')\nresult = d.secret",
    "underscore member": "d = detect(image, 'dog')\nresult = d.__class__",
    "underscore name": "_d = detect(image, 'dog')\nresult = _d",
    "calling a variable": "d = detect(image, 'dog')\nresult = d(1)",
    "unknown builtin": "result = open('x')",
    "eval": "result = eval('1')",
    "no result line": "d = detect(image, 'dog')\nn = d.count",
    "result not last": "result = 1\nd = detect(image, 'dog')",
    "import": "import os\nresult = 1",
    "def": "def f(x):\n    return x\nresult = f(1)",
    "lambda": "result = sorted([1], key=lambda x: x)",
    "if block": "if True:\n    result = 1",
    "prose": "The answer is 3.",
    "empty": "",
    "multi-line call": "result = detect(\n    image, 'dog')",
    "name too long": "a" * (MAX_NAME + 1) + " = 1\nresult = 1",
    "string too long": "result = '" + "x" * (MAX_STRING + 1) + "'",
    "too many statements": "x = 1\n" * MAX_STATEMENTS + "result = x",
    "a type name read as a variable": "d = detect(Image, 'dog')\nresult = d.count",
}


@pytest.mark.parametrize("program", list(REJECTED.values()), ids=list(REJECTED))
def test_things_outside_the_form_are_rejected(recognizer, program):
    """Given text outside the planner's form (unknown tools or arguments, other statements, runaway sizes),
    when recognised, then the grammar rejects it."""
    assert not recognizer.accepts(program)


def test_the_size_bounds_are_inclusive(recognizer):
    """Given a program exactly at the size bounds, when recognised, then it is accepted."""
    program = "x = 1\n" * (MAX_STATEMENTS - 1) + "a" * MAX_NAME + " = '" + "y" * MAX_STRING + "'\n"
    assert not recognizer.accepts(program)  # that is MAX_STATEMENTS lines with no result line
    assert recognizer.accepts("x = 1\n" * (MAX_STATEMENTS - 1) + "result = '" + "y" * MAX_STRING + "'")


def test_tools_argument_limits_the_grammar(registry):
    """Given a tool list, when the grammar is generated from it, then only those tools (and their aliases)
    can be called."""
    g = Recognizer(program_grammar(registry, ["image"], tools=[registry.get("detect")], aliases=False))
    assert g.accepts("result = detect(image, 'dog').count")
    assert not g.accepts("result = ocr(image).text")
    assert not g.accepts("result = objDet(image, 'dog')")


def test_request_grammar_offers_the_prompts_tools(registry):
    """Given a request with one image, when its grammar is made, then it has a call rule for exactly the tools
    the prompt offers for that request (so a two-image tool is in neither)."""
    req = PlanRequest("How many dogs?", {"image": "Image"})
    rules = parse_gbnf(request_grammar(req, registry))
    offered = {t.name for t in planner_tools(registry, req.inputs)}
    assert all(f"t-{n.replace('_', '-')}" in rules for n in offered)
    assert "t-stereo-depth" not in rules and "stereo_depth(" not in planner_messages(req, registry)[0].content


def test_unfenced_grammar_refuses_fences(registry):
    """Given fence=False, when a fenced program is recognised, then it is rejected; the bare one is accepted."""
    g = Recognizer(program_grammar(registry, ["image"], fence=False))
    assert g.accepts("result = ocr(image).text")
    assert not g.accepts("```python\nresult = ocr(image).text\n```")


def test_no_tools_is_an_error(registry):
    """Given an empty tool list, when a grammar is asked for, then a ValueError says there is nothing to call."""
    with pytest.raises(ValueError, match="no tools"):
        program_grammar(registry, ["image"], tools=[])


# --- which tools are offered -----------------------------------------------------------------

class _Missing(Backend):
    tool = "look"
    name = "missing"

    def availability(self) -> Availability:
        return Availability(False, "no weights here")

    def run(self, **args):  # pragma: no cover - never chosen
        raise AssertionError("unavailable backends are never run")


class _Present(_Missing):
    name = "present"

    def availability(self) -> Availability:
        return Availability(True, "ready")


@tool(category="expert", expert=True)
def look(image: Image, query: str, backend: Backend = None) -> Detections:
    """Find things (a test tool)."""
    raise AssertionError


@tool(category="basic")
def pair(left: Image, right: Image) -> int:
    """Compare two images (a test tool)."""
    return 0


@tool(category="vpeval")
def judge(image: Image) -> bool:
    """Score an image (a test tool)."""
    return True


def _registry(*backends: Backend) -> Registry:
    reg = Registry()
    for t in (look, pair, judge):
        reg.add(t)
    for b in backends:
        reg.add_backend(b)
    return reg


def test_an_expert_with_no_available_backend_is_left_out():
    """Given an expert tool whose only backend is unavailable, when the planner's tools are chosen, then it is
    left out (kept with include_unavailable=True); with an available backend it is offered."""
    reg = _registry(_Missing())
    assert "look" not in [t.name for t in planner_tools(reg)]
    assert "look" in [t.name for t in planner_tools(reg, include_unavailable=True)]
    reg2 = _registry(_Missing(), _Present())
    assert "look" in [t.name for t in planner_tools(reg2)]


def test_left_out_categories_and_image_counts():
    """Given a VPEval-category tool and a two-image tool, when tools are chosen for one image, then both are
    left out; with two image inputs the two-image tool is offered."""
    reg = _registry(_Present())
    one = [t.name for t in planner_tools(reg, {"image": "Image"})]
    two = [t.name for t in planner_tools(reg, {"left": "Image", "right": "Image"})]
    assert one == ["look"] and two == ["look", "pair"]
    assert "vpeval" in LEFT_OUT_CATEGORIES


def test_default_registry_offers_what_can_run(registry):
    """Given the default registry here, when tools are chosen, then exactly the available tools outside the
    left-out categories are offered."""
    offered = {t.name for t in planner_tools(registry)}
    expected = {t.name for t in registry.tools() if t.category not in LEFT_OUT_CATEGORIES and tool_available(t)}
    assert offered == expected and "detect" in offered


# --- llama.cpp ---------------------------------------------------------------------------------

needs_model = pytest.mark.skipif(not (HAVE_LLAMA and MODEL.exists()),
                                 reason=f"needs llama_cpp importable and the 0.5B model at {MODEL}")


@pytest.fixture(scope="module")
def vocab():
    import llama_cpp

    return llama_cpp.Llama(str(MODEL), vocab_only=True, verbose=False)


@needs_model
def test_grammar_compiles_with_llama_cpp(grammar, vocab):
    """Given the generated grammar, when llama.cpp builds its grammar sampler, then it accepts the grammar;
    a broken grammar is refused with GrammarRejected."""
    compile_check(grammar, vocab)
    with pytest.raises(GrammarRejected):
        compile_check("root ::= undefined-rule", vocab)


QUESTIONS = ["How many cats are in the picture?", "What does the text in the image say?",
             "Is the dog to the left of the person?"]


@pytest.fixture(scope="module")
def local_llm():
    from vistrace.agent.llm import make_llm

    llm = make_llm("local")
    yield llm
    close = getattr(llm, "close", None)
    if callable(close):
        close()


@pytest.mark.slow
@needs_model
def test_real_model_with_grammar_writes_programs_in_the_grammar(local_llm, registry, grammar, recognizer):
    """Given the real 0.5B model constrained by the grammar, when it plans three questions, then each answer is
    in the grammar's language, extracts to a program, and check finds no syntax, unknown-tool, argument-name or
    rejected-construct problems (what the grammar rules out; type mistakes and missing arguments are left to
    check and repair)."""
    from vistrace.agent.extract import extract_program
    from vistrace.api import check

    for q in QUESTIONS:
        msgs = planner_messages(PlanRequest(q, {"image": "Image"}), registry)
        out = local_llm.complete(msgs, grammar=grammar, max_tokens=120)
        if out.finish_reason == "stop":
            assert recognizer.accepts(out.text), out.text
        program = extract_program(out.text)
        bad = [str(p) for p in check(program, registry) if p.severity == "error" and (
            p.code in ("syntax", "unknown-tool", "rejected") or "has no argument" in p.message
            or "positional arguments" in p.message)]
        assert not bad, (q, program, bad)
