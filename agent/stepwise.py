"""Planning one statement at a time, each under a grammar typed by the variables written so far.

The model writes the program as usual, but the client is asked for one line at a time: the
assistant's answer so far is passed back as a *prefix* (llama.cpp continues it, reusing the cached
prompt), under :func:`~vistrace.agent.typed_grammar.statement_grammar` for the variables the earlier
lines assigned. After each line the new variable's type is inferred
(:func:`~vistrace.agent.typeview.expr_type`), so the next line can only use it the way its type
allows. Planning ends at ``result = ...``; when the statement budget is spent the last line must be
``result = ...``; a line whose expression repeats an earlier one's, or after which the model ends its answer, makes
the next line the last. A new line cannot assign an input or an earlier variable (values stay what
they were when later lines read them).

The first line may open with a ```` ```python ```` fence, as a code model's answer does (forbidding
it derails the model's first token); the fence stays in the prefix and out of the program.

A client supports this when it has ``supports_prefill = True`` and a ``complete(..., prefix=...)``
(:class:`~vistrace.agent.llm.local.LocalLlama`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .typed_grammar import statement_grammar, tool_returns
from .typeview import expr_type, key_of, value_classes

LINE_TOKENS = 96       # tokens one statement may take
TYPED_STATEMENTS = 10  # lines of a program planned this way (the library's programs have at most 6)
RESAMPLES = 2          # new draws of a line that failed before or was cut off
RESAMPLE_TEMPERATURE = 0.9


@dataclass(frozen=True)
class Planned:
    """What the statement-by-statement planner wrote and why it stopped (``stop`` or ``length``)."""

    text: str
    finish_reason: str
    statements: int
    grammar_chars: int   # the size of the last statement grammar (for the attempt's notes)


def input_keys(inputs: dict[str, str]) -> dict[str, str]:
    """Input name -> type key, from the type names the prompt shows (``Image``)."""
    known = value_classes()
    return {n: (t if t in known else key_of(t)) for n, t in inputs.items() if n.isidentifier()}


def _assigned(line: str) -> tuple[str, ast.expr] | None:
    try:
        tree = ast.parse(line)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign):
        return None
    node = tree.body[0]
    if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
        return None
    return node.targets[0].id, node.value


def _shape(line: str) -> str | None:
    """A statement's right-hand side, whatever its name (a repeat under another name is still a repeat)."""
    parsed = _assigned(line.strip())
    return ast.dump(parsed[1]) if parsed else None


def _members(line: str) -> set[str]:
    """The ``.names`` a statement reads."""
    try:
        return {n.attr for n in ast.walk(ast.parse(line.strip())) if isinstance(n, ast.Attribute)}
    except SyntaxError:
        return set()


def plan_statements(llm: Any, messages: list, registry: Any, tools: list, inputs: dict[str, str], *,
                    max_tokens: int = 512, temperature: float = 0.0, max_statements: int = TYPED_STATEMENTS,
                    line_tokens: int = LINE_TOKENS, avoid: Iterable[str] = (), exclude_members: Iterable[str] = (),
                    on_statement: Callable[[str], None] | None = None, max_chars: int | None = None) -> Planned:
    """Ask ``llm`` for a program line by line; returns the program text (every line ends with a newline).

    A line may take at most ``line_tokens`` tokens (a runaway expression is cut there and the plan ends
    with ``length``, which the agent reports as cut off); the whole program ``max_tokens``. ``avoid``:
    statements that failed in earlier attempts; one that comes again, or a line cut off, is drawn again
    (up to :data:`RESAMPLES` times) with sampling, the last time without the fields and methods the
    failed line used (``detect(image, 'x').best()`` failing on no detections comes back without ``best``).
    ``exclude_members``: fields and methods left out of every line (those that failed at run time in
    an earlier attempt of this turn: on this image they fail again).
    ``max_chars``: the cap on the whole answer (the agent's ``max_reply_chars``): once the lines drawn
    (including drawings thrown away) exceed it, planning stops with ``too_long`` and the text so far,
    which the extractor then refuses — a client that ignores ``max_tokens`` cannot make it run on.
    """
    avoid = {shape for a in avoid for shape in [_shape(a)] if shape}
    excluded = set(exclude_members)
    env = input_keys(inputs)
    returns = tool_returns(tools)
    lines: list[str] = []
    used = 0
    last = False
    size = 0
    seen: set[str] = set()
    fence = ""
    drawn = 0
    for i in range(max_statements):
        last = last or i == max_statements - 1
        grammar = statement_grammar(registry, env, tools=tools, last=last, inputs=list(env), fence=i == 0,
                                    exclude_members=excluded)
        size = len(grammar)
        budget = min(line_tokens, max_tokens - used)
        line = ""
        for tries in range(1 + RESAMPLES):
            if tries == RESAMPLES and _shape(line) in avoid:   # still the failed line: without its members
                grammar = statement_grammar(registry, env, tools=tools, last=last, inputs=list(env), fence=i == 0,
                                            exclude_members=excluded | _members(line))
            # a line that failed before, or one cut off, is drawn again with sampling and a new seed
            hot = {} if tries == 0 else {"temperature": max(temperature, RESAMPLE_TEMPERATURE), "seed": 1000 * i + tries}
            out = llm.complete(messages, grammar=grammar, prefix=fence + "".join(lines), max_tokens=max(1, budget),
                               **{"temperature": temperature, **hot})
            used += int((getattr(out, "usage", None) or {}).get("completion_tokens", 0)) or max(1, len(out.text) // 3)
            drawn += len(out.text)
            if max_chars is not None and drawn > max_chars:
                return Planned("".join(lines) + out.text, "too_long", len(lines) + 1, size)
            line = out.text.split("\n", 1)[-1] if i == 0 and out.text.startswith("```") else out.text
            if out.finish_reason != "length" and _shape(line) not in avoid:
                break
            if used >= max_tokens:
                break
        text = out.text
        if i == 0 and text.startswith("```"):   # the opening fence stays in the prompt, not in the program
            fence, _, text = text.partition("\n")
            fence += "\n"
        if out.finish_reason == "length":   # cut off inside the statement
            lines.append(text)
            return Planned("".join(lines), "length", len(lines), size)
        ended = not text.endswith("\n")    # the model closed its answer after this line
        text = text.rstrip("\n") + "\n"
        if on_statement is not None:
            on_statement(text)
        parsed = _assigned(text)
        if parsed is None:                  # the grammar allows only assignments: keep it for check to explain
            lines.append(text)
            return Planned("".join(lines), "stop", len(lines), size)
        name, value = parsed
        shape = ast.dump(value)
        if shape in seen or ended:          # the same expression again: the model is going round in circles
            last = True
        seen.add(shape)
        lines.append(text)
        if name == "result":
            return Planned("".join(lines), "stop", len(lines), size)
        env[name] = expr_type(value, env, returns)
        if used >= max_tokens:
            return Planned("".join(lines), "length", len(lines), size)
    return Planned("".join(lines), "stop", len(lines), size)


__all__ = ["Planned", "input_keys", "plan_statements"]
