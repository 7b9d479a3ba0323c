"""Given the real Qwen2.5-Coder-0.5B GGUF run in-process by llama.cpp, when it completes, streams and
decodes under a grammar or a JSON schema, then the output has the asked form, repeats exactly at
temperature 0, and a broken grammar is an LLMError rather than a crash.

Slow: the model loads once for the module (n_ctx 2048, 2 threads); every answer is kept short.
"""

from __future__ import annotations

import json

import pytest
from vistrace.agent.llm import LLMError, LocalLlama, Message, make_llm
from vistrace.tools import models

pytestmark = pytest.mark.slow

YES_NO = 'root ::= "yes" | "no"'
# a small JSON object: {"count": <integer>, "label": "<lowercase word>"}
COUNT_JSON = r'''
root   ::= "{" ws "\"count\":" ws int "," ws "\"label\":" ws word ws "}"
int    ::= [0-9] | [1-9] [0-9]
word   ::= "\"" [a-z]+ "\""
ws     ::= [ ]?
'''


@pytest.fixture(scope="module")
def llm() -> LocalLlama:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (pip install 'vistrace[agent]')")
    ok, why = models.status("qwen-0.5b")
    if not ok:
        pytest.skip(f"the 0.5B model is not here: {why} (vistrace models fetch qwen-0.5b)")
    return make_llm("local", n_ctx=2048, n_threads=2).load()


def ask(text: str, system: str = "You are a concise assistant.") -> list[Message]:
    return [Message("system", system), Message("user", text)]


def test_complete_answers_through_the_chat_template(llm):
    """Given a simple arithmetic question, when complete() runs, then the answer holds the number and
    usage counts the tokens."""
    out = llm.complete(ask("What is 2 + 3? Reply with only the number."), max_tokens=8)
    assert "5" in out.text
    assert out.finish_reason in ("stop", "length") and out.model == "local:qwen-0.5b"
    assert out.usage["completion_tokens"] >= 1 and out.usage["prompt_tokens"] > 10


def test_stream_gives_pieces_that_join_to_the_complete_answer(llm):
    """Given the same prompt, when streamed at temperature 0, then several pieces arrive and they join to
    exactly what complete() answers."""
    messages = ask("Name three colours, comma separated.")
    pieces = list(llm.stream(messages, max_tokens=16))
    assert len(pieces) > 1
    assert "".join(pieces) == llm.complete(messages, max_tokens=16).text


def test_repeat_calls_at_temperature_zero_are_identical(llm):
    """Given one prompt asked three times at temperature 0, when completed, then the three texts are equal."""
    messages = ask("Write one short sentence about cats.")
    texts = {llm.complete(messages, max_tokens=16).text for _ in range(3)}
    assert len(texts) == 1 and texts.pop().strip()


@pytest.mark.parametrize("question", ["Is water wet? Answer yes or no.", "Write a poem about the sea.",
                                      "Return the JSON {\"a\": 1}."])
def test_a_yes_no_grammar_allows_only_yes_or_no(llm, question):
    """Given a grammar of just "yes" | "no", when any question is asked (even one inviting prose), then the
    whole answer is exactly yes or no."""
    out = llm.complete(ask(question), grammar=YES_NO, max_tokens=8)
    assert out.text in ("yes", "no")


def test_a_json_grammar_gives_parseable_json_of_that_shape(llm):
    """Given a GBNF for {"count": int, "label": word}, when asked about an image description, then the
    answer parses as JSON with exactly those keys and types, also when streamed."""
    messages = ask("There are 3 cats on a sofa. Give the count and the animal as JSON.")
    data = json.loads(llm.complete(messages, grammar=COUNT_JSON, max_tokens=32).text)
    assert set(data) == {"count", "label"} and isinstance(data["count"], int) and data["label"].isalpha()
    assert json.loads("".join(llm.stream(messages, grammar=COUNT_JSON, max_tokens=32))) == data


def test_a_json_schema_constrains_the_answer(llm):
    """Given a JSON schema (object with a required boolean and an integer), when completed, then the answer
    parses and has those keys with those types."""
    schema = {"type": "object", "properties": {"is_red": {"type": "boolean"}, "wheels": {"type": "integer"}},
              "required": ["is_red", "wheels"]}
    text = llm.complete(ask("A red bicycle. Describe it as JSON."), json_schema=schema, max_tokens=40).text
    data = json.loads(text)
    assert isinstance(data["is_red"], bool) and isinstance(data["wheels"], int)


@pytest.mark.parametrize("grammar", ['root ::= undefined_rule', 'start ::= "a"', 'root ::= "unclosed', "root ::= ["])
def test_a_grammar_that_does_not_parse_is_an_llm_error(llm, grammar):
    """Given a GBNF with an undefined rule, no root, or broken syntax, when used, then LLMError names the
    problem (the process does not crash) and the model still answers afterwards."""
    with pytest.raises(LLMError, match="does not parse"):
        llm.complete(ask("hi"), grammar=grammar, max_tokens=4)
    assert llm.complete(ask("Say yes."), grammar=YES_NO, max_tokens=4).text in ("yes", "no")


def test_grammars_are_compiled_once_and_weights_loaded_once(llm):
    """Given a second LocalLlama on the same file and context size, when both answer with one grammar, then
    the weights were loaded once and the grammar is cached once."""
    from vistrace.tools.model_cache import MODELS

    other = make_llm("local:qwen-0.5b", n_ctx=2048, n_threads=2)
    other.complete(ask("Is fire hot?"), grammar=YES_NO, max_tokens=4)
    llm.complete(ask("Is ice cold?"), grammar=YES_NO, max_tokens=4)
    key = f"llama:{llm.model_path.resolve()}:2048"
    assert MODELS.loads[key] == 1
    assert list(llm._loaded().grammars).count(YES_NO) == 1


def test_a_prompt_longer_than_the_context_is_an_llm_error(llm):
    """Given a prompt far longer than n_ctx, when completed, then LLMError says to shorten it or raise n_ctx."""
    with pytest.raises(LLMError, match="n_ctx"):
        llm.complete(ask("word " * 5000), max_tokens=4)


def test_a_prefix_is_continued_not_repeated(llm):
    """Given the start of the assistant's answer, when complete(prefix=...) runs under a grammar for one more
    line, then only the continuation comes back, and it is that line."""
    msgs = ask("Write two lines of Python: a = 2, then b = a + 3.", system="You write Python code only.")
    out = llm.complete(msgs, prefix="a = 2\n", grammar='root ::= "b = " [a-z0-9 +]+ "\\n"?', max_tokens=12)
    assert out.text.startswith("b = ") and "a = 2" not in out.text
    assert out.usage["prompt_tokens"] > 10


def test_the_prefix_prompt_is_the_chat_prompt(llm):
    """Given the same messages, when the answer is continued from an empty prefix, then it is the answer the
    chat path gives (the model's own template renders both)."""
    msgs = ask("What is 2 + 3? Reply with only the number.")
    assert llm.complete(msgs, prefix="", max_tokens=6).text == llm.complete(msgs, max_tokens=6).text
