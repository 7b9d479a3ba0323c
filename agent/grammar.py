"""A GBNF grammar for planner programs, generated from the tool registry (for llama.cpp).

The grammar describes the program form the planner is asked for: one or more lines ``NAME = EXPR``,
the last one ``result = EXPR``, optionally wrapped in a ```` ```python ```` fence. Expressions are a
Python subset:

- calls of the **offered tools** only (:func:`vistrace.agent.toolset.planner_tools`, plus their
  aliases), each with its own argument rule: at most as many positional arguments as the tool has
  parameters, then keyword arguments named after the tool's *remaining* parameters — so an unknown
  tool or argument name cannot be generated. A parameter that takes a value type (``Image``,
  ``Box | Detections``) cannot receive a literal, and a ``Literal[...]`` parameter receives one of its
  values (or a variable);
- calls of the sandbox's safe builtins; ``.member`` / ``.method(...)`` limited to the public names of
  the value types (and the safe methods of ``str``/``list``/``dict``);
- literals (strings with escapes, f-strings, ints, floats, ``True``/``False``/``None``, lists, tuples,
  dicts), variable names (no leading ``_``), subscripts and slices, arithmetic, comparisons,
  ``and``/``or``/``not``, ``x if c else y`` and list comprehensions.

A context-free grammar cannot know which variables exist or which type a variable holds: reading an
undefined name, or calling ``.count`` on a string, still gets through and is ``check``'s job. So
``input_names`` only appear in the grammar's header comment: a variable is any identifier not
starting with ``_`` (listing the inputs as extra alternatives would only make the grammar ambiguous).

Whitespace is one optional space around operators and after commas, none inside brackets; a
statement is one line. Sizes are bounded so a small model cannot run away inside one rule: at most
:data:`MAX_STATEMENTS` lines, names of :data:`MAX_NAME` characters, strings of :data:`MAX_STRING`.
"""

from __future__ import annotations

import typing

from vistrace.signature import type_name

from .toolset import members, planner_aliases, planner_tools, reachable_value_types, safe_builtins, value_types


# The expression core: shared by every tool set. Tool rules are appended by program_grammar.
MAX_STATEMENTS = 20   # lines of a program: a runaway generation cannot go on forever
MAX_NAME = 32         # characters of a variable or keyword name
MAX_STRING = 200      # characters of a string literal

# Operators and literals: shared with the statement grammar (typed_grammar.py).
OPERATORS = r'''
ws ::= " "?
expr ::= disj (" if " disj " else " expr)?
disj ::= conj (" or " conj)*
conj ::= neg (" and " neg)*
neg ::= "not " neg | comparison
comparison ::= arith (cmp-op arith)*
cmp-op ::= ws ("==" | "!=" | "<=" | ">=" | "<" | ">") ws | " in " | " not in " | " is " | " is not "
arith ::= term (ws [-+] ws term)*
term ::= factor (ws ("*" | "/" | "//" | "%") ws factor)*
factor ::= [-+] factor | power
'''
LITERALS = r'''
number ::= [0-9]{1,12} ("." [0-9]{1,12})? ([eE] [-+]? [0-9]{1,3})?
string ::= "'" sq-char{0,MAX_STRING} "'" | "\"" dq-char{0,MAX_STRING} "\""
sq-char ::= [^'\\\n] | "\\" [^\n]
dq-char ::= [^"\\\n] | "\\" [^\n]
fstring ::= "f'" (fsq-char | fpart){0,MAX_STRING} "'" | "f\"" (fdq-char | fpart){0,MAX_STRING} "\""
fpart ::= "{{" | "}}" | "{" expr fmt? "}"
fsq-char ::= [^'\\\n{}] | "\\" [^\n]
fdq-char ::= [^"\\\n{}] | "\\" [^\n]
fmt ::= ("!" [rsa])? (":" [^{}'"\n]*)?
'''
_CORE = OPERATORS + r'''
power ::= primary (ws "**" ws factor)?
primary ::= atom trailer*
ref ::= (call | name | "(" expr ")") trailer*
trailer ::= "." member ("(" call-args? ")")? | "[" subscript "]"
subscript ::= expr | expr? ":" expr? (":" expr?)?
atom ::= call | name | number | string | fstring | "True" | "False" | "None" | list | paren | dict
call ::= tool-call | builtin-call
builtin-call ::= builtin "(" call-args? ")"
call-args ::= call-arg ("," ws call-arg)*
call-arg ::= kwname ws "=" ws expr | expr comp-for?
kwname ::= [a-zA-Z] [a-zA-Z0-9_]{0,MAX_NAME1}
list ::= "[" (expr (comp-for | ("," ws expr)* ","?))? "]"
paren ::= "(" (expr (comp-for | ("," ws expr)+ ","? | ",")?)? ")"
dict ::= "{" (dict-item ("," ws dict-item)*)? "}"
dict-item ::= expr ws ":" ws expr
comp-for ::= " for " name ("," ws name)* " in " disj (" if " disj)*
''' + LITERALS


def _rule_name(prefix: str, name: str) -> str:
    """GBNF rule names allow letters, digits and '-': tool names' underscores become '-'."""
    return f"{prefix}-{name.replace('_', '-')}"


def _lit(text: str) -> str:
    """A GBNF string literal."""
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{out}"'


def _alternation(words: typing.Iterable[str]) -> str:
    words = sorted(set(words), key=lambda w: (-len(w), w))  # longest first: readable, order does not matter
    return "(" + " | ".join(_lit(w) for w in words) + ")" if len(words) > 1 else _lit(words[0])


def _value_rule(annotation) -> str:
    """Which expression rule a parameter of this type accepts."""
    if typing.get_origin(annotation) is typing.Literal:
        values = [v for v in typing.get_args(annotation) if isinstance(v, str)]
        if values and len(values) == len(typing.get_args(annotation)):
            quoted = [f"'{v}'" for v in values] + [f'"{v}"' for v in values]
            return "(" + " | ".join(_lit(q) for q in quoted) + " | ref)"
        return "expr"
    names = {part.strip() for part in type_name(annotation).replace("[", "|").replace("]", "|").split("|")}
    names.discard("")
    known = set(value_types())
    if names and names <= known:  # only value types: a literal can never be right
        return "ref"
    return "expr"


def _call_rules(call_name: str, rule: str, params: list[tuple[str, str, list[str]]]) -> list[str]:
    """Rules for one callable name. ``params``: (parameter name, value rule, keyword names for it)."""
    n = len(params)
    if n == 0:
        return [f"{rule} ::= {_lit(call_name + '(')} {_lit(')')}"]
    lines = [f"{rule} ::= {_lit(call_name + '(')} {rule}-a0? {_lit(')')}"]
    for k in range(n):
        kw_alts = []
        for _, vrule, names in params[k:]:
            kw_alts.append(f"{_alternation(names)} ws \"=\" ws {vrule}")
        lines.append(f"{rule}-kw{k} ::= " + " | ".join(kw_alts))
        lines.append(f"{rule}-kws{k} ::= {rule}-kw{k} (\",\" ws {rule}-kw{k})*")
        vrule = params[k][1]
        if k + 1 < n:
            lines.append(f"{rule}-a{k} ::= {rule}-kws{k} | {vrule} (\",\" ws {rule}-a{k + 1})?")
        else:
            lines.append(f"{rule}-a{k} ::= {rule}-kws{k} | {vrule}")
    return lines


def _tool_params(t) -> list[tuple[str, str, list[str]]]:
    return [(p.name, _value_rule(p.annotation), [p.name]) for p in t.params]


def _alias_params(t, alias) -> list[tuple[str, str, list[str]]]:
    out = []
    for p in t.params:
        if p.name in alias.presets:
            continue
        names = [a for a, target in alias.renames.items() if target == p.name] + [p.name]
        out.append((p.name, _value_rule(p.annotation), names))
    return out


def program_grammar(registry, input_names: list[str], *, tools: list | None = None, aliases: bool = True,
                    fence: bool = True) -> str:
    """GBNF text for llama.cpp: programs of ``NAME = EXPR`` lines ending with ``result = EXPR``.

    ``tools`` defaults to :func:`planner_tools(registry) <vistrace.agent.toolset.planner_tools>` (pass
    the same list the prompt was rendered with); ``aliases`` adds the aliases of those tools
    (VisProg/VPEval names); ``fence`` allows an optional ```` ```python ```` fence around the program
    (the extractor removes it).
    """
    tools = planner_tools(registry) if tools is None else list(tools)
    if not tools:
        raise ValueError("no tools to build a program grammar from: the registry offers none to the planner")
    call_rules: list[str] = []
    call_names: list[str] = []
    for t in tools:
        rule = _rule_name("t", t.name)
        call_names.append(rule)
        call_rules += _call_rules(t.name, rule, _tool_params(t))
    if aliases:
        for a in planner_aliases(registry, tools):
            t = registry.get(a.tool)
            rule = _rule_name("a", a.name)
            call_names.append(rule)
            call_rules += _call_rules(a.name, rule, _alias_params(t, a))
    reachable = reachable_value_types(tools)
    member_names = sorted({m.name for n in reachable for m in members(value_types()[n])} |
                          set(_plain_member_names()))
    inputs = [n for n in input_names if n.isidentifier() and not n.startswith("_")]
    head = [
        "# vistrace planner program grammar (generated from the tool registry)",
        (f"root ::= fence-open? stmt{{0,{MAX_STATEMENTS - 1}}} last-stmt fence-close?" if fence
         else f"root ::= stmt{{0,{MAX_STATEMENTS - 1}}} last-stmt"),
        'stmt ::= name ws "=" ws expr "\\n"',
        'last-stmt ::= "result" ws "=" ws expr "\\n"?',
    ]
    if fence:
        head += ['fence-open ::= "```" ("python" | "py")? "\\n"', 'fence-close ::= "```" "\\n"?']
    if inputs:
        head.insert(1, "# inputs: " + ", ".join(inputs))
    # Variables are snake_case or ALL-CAPS (VisProg's BOX0, IMAGE), never Capitalised: a small model
    # otherwise reads the type name `Image` as a variable (5 of the 8 questions it never answered in
    # bench/planner.py). An input with another spelling re-opens every form.
    if all(n.islower() or n.isupper() for n in inputs):
        lines = head + [f"name ::= [a-z] [a-zA-Z0-9_]{{0,{MAX_NAME - 1}}} | [A-Z] [A-Z0-9_]{{0,{MAX_NAME - 1}}}"]
    else:
        lines = head + [f"name ::= [a-zA-Z] [a-zA-Z0-9_]{{0,{MAX_NAME - 1}}}"]
    lines += _CORE.strip().replace("MAX_STRING", str(MAX_STRING)).replace("MAX_NAME1", str(MAX_NAME - 1)).splitlines()
    lines.append("tool-call ::= " + " | ".join(call_names))
    lines.append("builtin ::= " + _alternation(safe_builtins()))
    lines.append("member ::= " + _alternation(member_names))
    lines += call_rules
    return "\n".join(lines) + "\n"


def _plain_member_names() -> list[str]:
    from vistrace.sandbox.safety import SAFE_METHODS

    return sorted({m for methods in SAFE_METHODS.values() for m in methods})


def request_grammar(req, registry) -> str:
    """The grammar for a :class:`~vistrace.agent.prompt.PlanRequest`: the same tools its prompt offers."""
    return program_grammar(registry, list(req.inputs), tools=planner_tools(registry, req.inputs))


class GrammarRejected(ValueError):
    """llama.cpp could not parse a GBNF grammar (its parser prints the reason on stderr)."""


def compile_check(grammar: str, llama) -> None:
    """Compile ``grammar`` with llama.cpp for ``llama`` (a ``llama_cpp.Llama``; ``vocab_only=True`` is enough).

    ``llama_cpp.LlamaGrammar.from_string`` only stores the text (llama-cpp-python 0.3.x): a bad grammar
    is noticed when sampling starts, where a NULL sampler is added to the chain. This builds the
    grammar sampler right away and raises :class:`GrammarRejected` when llama.cpp refuses it.
    """
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, grammar.encode("utf-8"), b"root")
    if not sampler:
        raise GrammarRejected("llama.cpp rejected the GBNF grammar (its parser's message is on stderr)")
    llama_cpp.llama_sampler_free(sampler)


__all__ = ["GrammarRejected", "program_grammar", "request_grammar", "compile_check", "MAX_STATEMENTS", "MAX_NAME", "MAX_STRING"]
