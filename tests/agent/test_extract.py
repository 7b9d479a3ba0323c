"""Given what a model answered (fences, prose, labels, odd bytes, truncation, no `result`), when the program
is extracted, then the plain-statement program comes out — or NoProgram (an LLMError) when there is none."""

from __future__ import annotations

import pytest

import vistrace
from vistrace.agent.extract import NoProgram, extract_program
from vistrace.agent.llm.base import LLMError
from vistrace.sandbox import errors

COUNT = "dogs = detect(image, 'dog')\nresult = dogs.count\n"

CASES = {
    "bare program": (COUNT, COUNT),
    "python fence with prose around": (
        "Here is the program:\n```python\ndogs = detect(image, 'dog')\nresult = dogs.count\n```\n"
        "It counts the dogs.", COUNT),
    "plain fence": ("```\ndogs = detect(image, 'dog')\nresult = dogs.count\n```", COUNT),
    "tilde fence": ("~~~python\ndogs = detect(image, 'dog')\nresult = dogs.count\n~~~\n", COUNT),
    "py fence, no closing fence": ("```py\ndogs = detect(image, 'dog')\nresult = dogs.count\n", COUNT),
    "prose before and after without fences": (
        "The program:\n\ndogs = detect(image, 'dog')\nresult = dogs.count\n\nHope this helps!", COUNT),
    "leading Program: label on its own line": ("Program:\ndogs = detect(image, 'dog')\nresult = dogs.count", COUNT),
    "leading Program: label with code on the line": (
        "Program: dogs = detect(image, 'dog')\nresult = dogs.count", COUNT),
    "bold label": ("**Program:**\ndogs = detect(image, 'dog')\nresult = dogs.count", COUNT),
    "windows newlines": ("dogs = detect(image, 'dog')\r\nresult = dogs.count\r\n", COUNT),
    "old mac newlines": ("dogs = detect(image, 'dog')\rresult = dogs.count", COUNT),
    "tab-indented block": ("\tdogs = detect(image, 'dog')\n\tresult = dogs.count", COUNT),
    "space-indented block in prose": ("Steps:\n    dogs = detect(image, 'dog')\n    result = dogs.count\n", COUNT),
    "chat template tokens": ("dogs = detect(image, 'dog')\nresult = dogs.count<|im_end|>", COUNT),
    "control characters": ("dogs = detect(image, 'dog')\x07\nresult = dogs.count\x00", COUNT),
    "byte order mark": ("\ufeffdogs = detect(image, 'dog')\nresult = dogs.count", COUNT),
    "imports are dropped": (
        "import vistrace\nfrom vistrace import detect\ndogs = detect(image, 'dog')\nresult = dogs.count", COUNT),
    "truncated last line is dropped": (
        "dogs = detect(image, 'dog')\nn = dogs.count\nresult = f'{n} do",
        "dogs = detect(image, 'dog')\nn = dogs.count\nresult = n\n"),
    "truncated last line inside an open fence": (
        "```python\ndogs = detect(image, 'dog')\nresult = dogs.count\nextra = (", COUNT),
    "last statement an expression becomes result": ("dogs = detect(image, 'dog')\ndogs.count", COUNT),
    "last statement print(x) becomes result": ("dogs = detect(image, 'dog')\nprint(dogs.count)", COUNT),
    "last assignment to another name becomes result": (
        "dogs = detect(image, 'dog')\nn = dogs.count", "dogs = detect(image, 'dog')\nn = dogs.count\nresult = n\n"),
    "a stray trailing word is dropped before the rule": ("dogs = detect(image, 'dog')\ndogs.count\nDone", COUNT),
    "a trailing bare variable becomes result": (
        "dogs = detect(image, 'dog')\nn = dogs.count\nn", "dogs = detect(image, 'dog')\nn = dogs.count\nresult = n\n"),
    "result assigned earlier stays as is": (
        "result = 0\ndogs = detect(image, 'dog')\nresult = dogs.count\nprint(result)",
        "result = 0\ndogs = detect(image, 'dog')\nresult = dogs.count\nprint(result)\n"),
    "VisProg FINAL_RESULT counts as the result": (
        "BOX0=LOC(image=IMAGE,object='dog')\nANSWER0=COUNT(box=BOX0)\nFINAL_RESULT=RESULT(var=ANSWER0)",
        "BOX0=LOC(image=IMAGE,object='dog')\nANSWER0=COUNT(box=BOX0)\nFINAL_RESULT=RESULT(var=ANSWER0)\n"),
    "several fenced blocks: the one with result wins": (
        "First:\n```python\nx = 1\n```\nThen:\n```python\ndogs = detect(image, 'dog')\nresult = dogs.count\n```\n"
        "Output:\n```python\nresult\n```", COUNT),
    "several fenced blocks: a block that does not parse loses": (
        "```python\ndogs = detect(image, 'dog')\nresult = dogs.count\n```\n```python\nresult = = 3\n```", COUNT),
    "several complete blocks: the last one wins": (
        "```python\nresult = 1\n```\nBetter:\n```python\ndogs = detect(image, 'dog')\nresult = dogs.count\n```", COUNT),
    "a block with result beats a later one the rule would complete": (
        "```python\ndogs = detect(image, 'dog')\nresult = dogs.count\n```\nTo see it:\n```python\nprint(result)\n```",
        COUNT),
    "a non-code fence is skipped": (
        "```text\nsome output\n```\n```python\ndogs = detect(image, 'dog')\nresult = dogs.count\n```", COUNT),
}


@pytest.mark.parametrize("text, expected", list(CASES.values()), ids=list(CASES))
def test_extracts_the_program(text, expected):
    """Given a model answer, when the program is extracted, then it is the expected plain program."""
    assert extract_program(text) == expected


def test_non_utf8_bytes_are_decoded_with_replacement():
    """Given bytes that are not valid UTF-8, when extracted, then the bad byte becomes U+FFFD and the program parses."""
    program = extract_program(b"dogs = detect(image, 'd\xffog')\nresult = dogs.count\n")
    assert program == "dogs = detect(image, 'd\ufffdog')\nresult = dogs.count\n"


def test_utf8_bytes_are_decoded():
    """Given UTF-8 bytes, when extracted, then the text is kept (here a non-ASCII query)."""
    assert extract_program("result = detect(image, 'café').count".encode()) == "result = detect(image, 'café').count\n"


def test_extracted_programs_pass_check():
    """Given the fenced-with-prose answer, when extracted and checked, then the sandbox accepts it."""
    program = extract_program(CASES["python fence with prose around"][0])
    assert errors(vistrace.check(program)) == []


NO_PROGRAM = {
    "empty": "",
    "whitespace": "  \n\t\n",
    "empty bytes": b"",
    "only template tokens": "<|im_end|>",
    "prose only": "I am sorry, I cannot answer that question about the image.",
    "prose with a colon": "The answer is: three dogs.",
    "a single word": "Done",
    "empty fence": "```python\n```",
    "fence with prose inside": "```\nThe image shows two dogs.\n```",
    "nothing parses": "result = = detect(image,",
    "only a def (general Python, not the planner form)": (
        "```python\ndef detect(image, query):\n    return [b for b in image.boxes if b.label == query]\n```"),
    "only a class": "class Counter:\n    pass\n",
}


@pytest.mark.parametrize("text", list(NO_PROGRAM.values()), ids=list(NO_PROGRAM))
def test_no_program_raises_no_program(text):
    """Given an answer with no plain-statement program, when extracted, then NoProgram (an LLMError) is raised
    with a message that says what was wrong."""
    with pytest.raises(NoProgram) as info:
        extract_program(text)
    assert isinstance(info.value, LLMError)
    assert info.value.hint


def test_a_def_is_named_in_the_error():
    """Given an answer that defines a function, when extracted, then the error names the function and asks for
    plain statements."""
    with pytest.raises(NoProgram, match=r"defines def read_word\(\.\.\.\)"):
        extract_program("from PIL import Image\ndef read_word(image, text):\n    return image.text\n")


@pytest.mark.parametrize("value", [None, 42, ["result = 1"]], ids=["None", "int", "list"])
def test_non_text_raises_no_program(value):
    """Given something that is not text, when extracted, then NoProgram says what it got."""
    with pytest.raises(NoProgram, match="not text"):
        extract_program(value)


def test_long_prose_stays_bounded():
    """Given a long answer of prose lines that look like calls, when extracted, then the search is bounded
    and ends with NoProgram rather than running on."""
    text = "\n".join(f"Step {i} (look at the picture) and then" for i in range(2000))
    with pytest.raises(NoProgram):
        extract_program(text)


PLAN_PROBLEMS = {
    "library habits": ("image = Image.open('x.jpg')\ntext = pytesseract.image_to_string(image)\nresult = text",
                       [(1, "name 'Image' is not defined"), (2, "name 'pytesseract' is not defined")]),
    "a misspelt input": ("dogs = detect(picture, 'dog')\nresult = dogs.count", [(1, "name 'picture' is not defined")]),
    "no result": ("if True:\n    n = 1", [(1, "never assigns 'result'")]),
    "clean": ("dogs = detect(image, 'dog')\nresult = dogs.count", []),
    "does not parse (check's business)": ("result = = 1", []),
}


@pytest.mark.parametrize("program, expected", list(PLAN_PROBLEMS.values()), ids=list(PLAN_PROBLEMS))
def test_plan_problems_know_the_request_inputs(program, expected):
    """Given a program and the request's inputs (image), when its plan problems are listed, then names that are
    neither inputs nor assigned, and a missing result, are reported with their line and the inputs as hint."""
    from vistrace.agent.extract import plan_problems

    found = plan_problems(program, ["image"])
    assert len(found) == len(expected)
    for p, (line, msg) in zip(found, expected):
        assert p.line == line and msg in p.message
    for p in found:
        assert p.hint
