"""A type-aware GBNF grammar for the *next statement* of a program, given the variables so far.

:mod:`vistrace.agent.grammar` describes whole programs, and a context-free grammar cannot know which
variables exist or what they hold, so a model could still read an undefined name, pass a string
where an image goes, or ask ``Detections`` for a field it lacks (most of the 0.5B model's failures in
``bench/planner.py``). Written one statement at a time, the grammar can know: the planner
(:mod:`vistrace.agent.stepwise`) asks for one ``name = expr`` line under :func:`statement_grammar`
for the variables assigned so far (with their types from :mod:`vistrace.agent.typeview`), then the
next line under a new grammar, and so on. Under this grammar:

- an expression reads only **assigned variables and inputs**;
- ``.field``, ``.method(...)``, ``[i]`` and ``[a:b]`` follow the **type** of what they apply to, step
  by step (``dets.best().label`` is a ``str``; ``lines.find('total')[0].text`` a ``str``);
- an argument whose parameter takes value types (``image: Image``, ``box: Box | Detections``)
  receives only an expression of one of those types: a variable, a tool call or a chain that ends
  in one;
- ``Literal[...]`` parameters take one of their values, and a parameter whose every available backend
  has a **closed vocabulary** (CenterNet's COCO-80 for ``detect(query=...)``) takes only its words;
- calls are the offered tools (no aliases: the prompt does not show them) and the safe builtins.
  There are no comprehensions: a loop variable would be read before it is bound, and the value
  types' methods (``dets.labels``, ``dets.above(0.5)``, ``lines.find(...)``) do their work.

Rule names are derived from type keys (``list[Box]`` -> ``list-Box``): ``s-K`` starts an
expression of type K, ``c-K-x`` continues one from K to any type, ``c-K-T`` continues one from K
to the target types T, ``a-T`` is an argument of the types T.
"""

from __future__ import annotations

import keyword
import re
import typing

from .grammar import LITERALS, MAX_NAME, OPERATORS, _alternation, _lit
from .toolset import all_member_names, planner_tools, safe_builtins, tool_vocabulary
from .typeview import ANY_KEY, accepted_keys, builtin_returns, closure, key_of, steps

# The operators and literals of the program grammar; what an atom is, and calls, differ here.
_EXPR = OPERATORS + r'''
power ::= atom (ws "**" ws factor)?
atom ::= ref | number | "True" | "False" | "None" | paren | dict
paren ::= "(" expr ("," ws expr)* ","? ")"
dict ::= "{" (dict-item ("," ws dict-item)*)? "}"
dict-item ::= expr ws ":" ws expr
call-args ::= call-arg ("," ws call-arg)*
call-arg ::= kwname ws "=" ws expr | expr
kwname ::= [a-z] [a-zA-Z0-9_]{0,MAX_NAME1}
index ::= "[" expr "]"
slice ::= "[" expr? ":" expr? (":" expr?)? "]"
list-display ::= "[" (expr ("," ws expr)* ","?)? "]"
''' + LITERALS



MAX_TEXT = 100   # characters of a string literal: a question's words, a label, a date; not a page


def _san(key: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "-", key).strip("-")


def typed_call_rules(call_name: str, rule: str, params: list[tuple[str, str, bool]]) -> dict[str, str]:
    """Rules for a call that gives every **required** parameter: ``params`` are (name, value rule, required).

    Arguments come positionally first, then by keyword in the declared order (how a model writes
    them); a required parameter not given positionally must come by keyword, an optional one may be
    left out. (A context-free rule that allowed keywords in any order would need a rule per subset.)
    """
    n = len(params)
    out: dict[str, str] = {}
    open_, close = _lit(call_name + "("), _lit(")")
    if n == 0:
        out[rule] = f"{open_} {close}"
        return out

    def kw(i: int) -> str:
        name, vrule, _ = params[i]
        return f'{_lit(name)} ws "=" ws {vrule}'

    def rest_optional(k: int) -> bool:
        return not any(req for _, _, req in params[k:])

    for j in range(n - 1, -1, -1):        # kr{j}: the keywords from parameter j on, after a comma
        tail = f" {rule}-kr{j + 1}" if j + 1 < n else ""
        item = f'", " {kw(j)}'
        out[f"{rule}-kr{j}"] = f"{item}{tail}" if params[j][2] else f"({item})?{tail}"
    for k in range(n - 1, -1, -1):        # p{k}: a non-empty argument list from parameter k on
        alts = []
        value = params[k][1]
        if k + 1 == n:
            alts.append(value)
        elif rest_optional(k + 1):
            alts.append(f'{value} (", " {rule}-p{k + 1})?')
        else:
            alts.append(f'{value} ", " {rule}-p{k + 1}')
        for f in range(k, n):             # the first keyword argument: any parameter up to the next required one
            tail = f" {rule}-kr{f + 1}" if f + 1 < n else ""
            alts.append(f"{kw(f)}{tail}")
            if params[f][2]:
                break
        out[f"{rule}-p{k}"] = " | ".join(alts)
    out[rule] = f"{open_} {rule}-p0? {close}" if rest_optional(0) else f"{open_} {rule}-p0 {close}"
    return out


def name_rule(excluded: typing.Iterable[str], max_len: int = MAX_NAME) -> dict[str, str]:
    """Rules for a new variable name (snake_case or ALL-CAPS) that is none of ``excluded``.

    GBNF has no negation, so the excluded words become a trie whose every node says which letters
    lead on to an excluded word and which leave them all behind (then any identifier tail is free).
    """
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
    words = sorted({w for w in excluded if w and w[0].islower() and all(c in alphabet for c in w)})
    trie: dict[str, dict] = {}
    for w in words:
        node = trie
        for c in w:
            node = node.setdefault(c, {})
        node["$"] = {}
    rules: dict[str, str] = {"new-name": f"nn-0 | [A-Z] [A-Z0-9_]{{0,{max_len - 1}}}"}
    counter = [0]

    def visit(node: dict, depth: int) -> str:
        name = f"nn-{counter[0]}"
        counter[0] += 1
        letters = [c for c in node if c != "$"] if depth < max_len else []
        pool = "abcdefghijklmnopqrstuvwxyz" if depth == 0 else alphabet
        other = "".join(c for c in pool if c not in letters)
        alts = [f'"{c}" {visit(node[c], depth + 1)}' for c in sorted(letters)]
        if other and depth < max_len:
            free = max_len - depth - 1     # characters left after this one
            alts.append(f"[{other}]" + (f" [a-zA-Z0-9_]{{0,{free}}}" if free > 0 else ""))
        body = " | ".join(alts) if alts else '""'
        if depth > 0 and "$" not in node:
            body = f"({body})?"
        rules[name] = body
        return name

    visit(trie, 0)
    return rules


class _Builder:
    """Collects the rules of one statement grammar, each made once, on first use."""

    def __init__(self, registry, tools, env: dict[str, str], exclude_members: typing.Iterable[str] = ()):
        self.registry = registry
        self.exclude = frozenset(exclude_members)
        self.env = env
        self.rules: dict[str, str] = {}
        self.tools = list(tools)
        self.tool_returns = {t.name: key_of(t.returns) for t in self.tools}
        self.builtins = builtin_returns()
        self.vars: dict[str, list[str]] = {}
        for name, key in env.items():
            self.vars.setdefault(key, []).append(name)
        self.start_keys = sorted(set(self.vars) | set(self.tool_returns.values()) | set(self.builtins.values())
                                 | {"str", "list"})
        self._reach: dict[str, set[str]] = {}
        self.callable_tools = self._callable_tools()

    # --- reachability -----------------------------------------------------------------------
    def reach(self, key: str) -> set[str]:
        if key not in self._reach:
            self._reach[key] = closure([key])
        return self._reach[key]

    def can_reach(self, key: str, target: frozenset[str] | None) -> bool:
        return target is None or bool(self.reach(key) & target)

    def _callable_tools(self) -> list:
        """Tools whose required value-typed arguments can be given from what exists (iterated to a fixpoint)."""
        have = set(self.vars) | {"str", "list"} | set(self.builtins.values())
        ok: list = []
        changed = True
        while changed:
            changed = False
            reach = set().union(*(self.reach(k) for k in have)) if have else set()
            for t in self.tools:
                if t in ok:
                    continue
                needs = [accepted_keys(p.annotation) for p in t.params if p.required]
                if all(n is None or n[1] or n[0] & reach for n in needs):
                    ok.append(t)
                    have.add(self.tool_returns[t.name])
                    changed = True
        return [t for t in self.tools if t in ok]

    # --- rules ------------------------------------------------------------------------------
    def add(self, name: str, body: str) -> str:
        self.rules.setdefault(name, body)
        return name

    def start(self, key: str, literals: bool = True) -> str | None:
        """``s-K``: an expression that *is* of type K: a variable, a call returning K, a literal.

        Without ``literals`` (``s-K-nl``), no string, f-string or list display: where an argument needs a
        number or a box, a chain may start at a text variable (``name.count('a')``) but not at a quote,
        inside which a small model otherwise writes on until the string's length limit."""
        name = f"s-{_san(key)}" + ("" if literals else "-nl")
        if name in self.rules:
            return name
        alts = []
        if self.vars.get(key):
            alts.append(_alternation(self.vars[key]))
        alts += [self.tool_call(t) for t in self.callable_tools if self.tool_returns[t.name] == key]
        builtins = sorted(b for b, k in self.builtins.items() if k == key)
        if builtins:
            alts.append(f'{_alternation(builtins)} "(" call-args? ")"')
        if key == "str" and literals:
            alts += ["string", "fstring"]
        if key == "list" and literals:
            alts.append("list-display")
        return self.add(name, " | ".join(alts)) if alts else None

    def chain(self, key: str, target: frozenset[str] | None) -> str | None:
        """Steps from a value of type ``key`` to one of ``target`` (None: to any type).

        Returns a rule name, ``""`` when only the empty chain fits, or None when none can."""
        if key == ANY_KEY:
            if target is not None:
                return None
            return self.add("c-any-x", '("." any-member ("(" call-args? ")")? c-any-x | index c-any-x | '
                                       'slice c-any-x)?')
        if not self.can_reach(key, target):
            return None
        useful = [s for s in steps(key) if self.can_reach(s.result, target) and s.name not in self.exclude]
        if not useful:
            return ""
        name = f"c-{_san(key)}-" + ("x" if target is None else _san("-".join(sorted(target))))
        if name in self.rules:
            return name
        self.rules[name] = ""   # reserved: a step may lead back to this type
        alts: dict[str, list[str]] = {}
        fields: dict[str, list[str]] = {}
        for s in useful:
            if s.kind == "field":
                fields.setdefault(s.result, []).append(s.name)
                continue
            if s.kind == "method":
                text = self.method_call(key, s)
            else:
                text = s.kind   # index | slice
            alts.setdefault(s.result, []).append(text)
        for result, names in fields.items():
            alts.setdefault(result, []).insert(0, '"." ' + _alternation(names))
        parts = []
        for result, texts in alts.items():
            rest = self.chain(result, target)
            head = texts[0] if len(texts) == 1 else "(" + " | ".join(texts) + ")"
            parts.append(f"{head} {rest}".strip())
        optional = target is None or key in target
        self.rules[name] = "(" + " | ".join(parts) + ")" + ("?" if optional else "")
        return name

    def ref(self, key: str, target: frozenset[str] | None) -> str | None:
        start = self.start(key, literals=target is None or key in target)
        rest = self.chain(key, target)
        if start is None or rest is None:
            return None
        return f"{start} {rest}".strip()

    def arg(self, target: frozenset[str], optional: bool) -> str:
        """``a-T``: an argument of one of the value types ``target``."""
        name = "a-" + _san("-".join(sorted(target))) + ("-opt" if optional else "")
        if name in self.rules:
            return name
        self.rules[name] = ""
        alts = [r for k in self.start_keys if k != ANY_KEY for r in [self.ref(k, target)] if r]
        if self.vars.get(ANY_KEY):
            alts.append(f"{_alternation(self.vars[ANY_KEY])} c-any-x")
            self.chain(ANY_KEY, None)
        if optional:
            alts.append('"None"')
        self.rules[name] = " | ".join(alts) if alts else '"None"'
        return name

    def named_text(self) -> str | None:
        """A text held in a variable (a ``str`` one, or one of unknown type): where only certain words fit,
        the grammar offers them as literals and lets a variable through (``check`` looks at literals only)."""
        alts = []
        if self.vars.get("str"):
            alts.append(_alternation(self.vars["str"]))
        if self.vars.get(ANY_KEY):
            alts.append(f"{_alternation(self.vars[ANY_KEY])} c-any-x")
            self.chain(ANY_KEY, None)
        return self.add("named-str", " | ".join(alts)) if alts else None

    def value_rule(self, annotation, vocab: tuple[str, ...] | None = None, where: str = "") -> str:
        """The rule an argument of this parameter type takes."""
        if typing.get_origin(annotation) is typing.Literal:
            values = [v for v in typing.get_args(annotation) if isinstance(v, str)]
            if values and len(values) == len(typing.get_args(annotation)):
                quoted = " | ".join(_lit(q) for v in values for q in (f"'{v}'", f'"{v}"'))
                named = self.named_text()
                return f"({quoted} | {named})" if named else f"({quoted})"
            return "expr"
        if vocab:
            words = self.add(f"vw-{_san(where)}", _alternation(vocab))
            quoted = f"\"'\" {words} (\", \" {words})* \"'\" | \"\\\"\" {words} (\", \" {words})* \"\\\"\""
            named = self.named_text()
            return f"({quoted} | {named})" if named else f"({quoted})"
        taken = accepted_keys(annotation)
        if taken is None:
            return "expr"
        if taken[0] <= {"int", "float"}:
            return self.number(taken[0], taken[1])
        return self.arg(taken[0], taken[1])

    def number(self, target: frozenset[str], optional: bool) -> str:
        """``n-T``: arithmetic over number literals and references of the number types ``target``."""
        name = "n-" + _san("-".join(sorted(target))) + ("-opt" if optional else "")
        if name in self.rules:
            return name
        whole = target == {"int"}
        ops = '("+" | "-" | "*" | "//" | "%")' if whole else '("+" | "-" | "*" | "/" | "//")'
        literal = '[0-9]{1,12}' if whole else 'number'
        refs = [r for k in self.start_keys if k != ANY_KEY for r in [self.ref(k, target)] if r]
        if self.vars.get(ANY_KEY):
            refs.append(f"{_alternation(self.vars[ANY_KEY])} c-any-x")
            self.chain(ANY_KEY, None)
        atom = f"{name}-atom"
        self.rules[atom] = " | ".join([f'"-"? {literal}', *refs, f'"(" {name}-sum ")"'])
        self.rules[f"{name}-sum"] = f"{atom} (ws {ops} ws {atom})*"
        self.rules[name] = f"{name}-sum" + (' | "None"' if optional else "")
        return name

    def tool_call(self, tool) -> str:
        name = f"t-{tool.name.replace('_', '-')}"
        if name not in self.rules:
            self.rules[name] = ""
            params = [(p.name, self.value_rule(p.annotation, tool_vocabulary(tool, p.name), f"{tool.name}-{p.name}"),
                       p.required) for p in tool.params]
            self.rules.update(typed_call_rules(tool.name, name, params))
        return name

    def method_call(self, key: str, s) -> str:
        name = f"m-{_san(key)}-{s.name.replace('_', '-')}"
        if name not in self.rules:
            self.rules[name] = ""
            if s.typed:
                params = [(p, self.value_rule(ann), not has_default) for p, ann, has_default in s.params]
                self.rules.update(typed_call_rules("." + s.name, name, params))
            else:
                self.rules[name] = f'{_lit("." + s.name + "(")} call-args? ")"'
        return name


def statement_grammar(registry, env: dict[str, str], *, tools: list | None = None, last: bool = False,
                      inputs: typing.Iterable[str] | None = None, fence: bool = False,
                      exclude_members: typing.Iterable[str] = ()) -> str:
    """GBNF for the next statement ``name = expr\\n``, reading only the variables of ``env`` (name -> type key).

    ``tools`` defaults to the planner's offered tools for these inputs; ``last`` allows only
    ``result = expr`` (the program's statement budget is spent); ``inputs``: names a new statement may
    not assign (default: every name of ``env``); ``fence``: the statement may open with a
    ```` ```python ```` line (for the first statement of an answer); ``exclude_members``: fields and
    methods of value types left out (those of a line that failed and keeps coming back).
    """
    tools = planner_tools(registry) if tools is None else list(tools)
    b = _Builder(registry, tools, env, exclude_members)
    refs = [r for k in b.start_keys if k != ANY_KEY for r in [b.ref(k, None)] if r]
    if b.vars.get(ANY_KEY):
        refs.append(f"{_alternation(b.vars[ANY_KEY])} c-any-x")
        b.chain(ANY_KEY, None)
    target = '"result"' if last else "new-name"
    head = ["# vistrace planner: the next statement, for the variables " + (", ".join(
                f"{n}: {k}" for n, k in env.items()) or "(none)"),
            # The newline is optional: a model that ends its answer after this line stops here (and the
            # planner asks for `result = ...` next) instead of being forced to go on writing the line.
            f'root ::= {"fence? " if fence else ""}{target} ws "=" ws expr "\\n"?',
            "ref ::= " + " | ".join(refs)]
    if fence:      # a code model opens its answer with a fence: forbidding it derails the first token
        head.append('fence ::= "```" ("python" | "py")? "\\n"')
    if not last:   # not a keyword, tool, builtin or input: assigning one hides it or loses the input
        excluded = set(keyword.kwlist) | {t.name for t in tools} | set(safe_builtins()) | set(inputs or env)
        head += [f"{k} ::= {v}" for k, v in name_rule(excluded).items()]
    if "c-any-x" in b.rules:
        head.append("any-member ::= " + _alternation(all_member_names()))
    core = _EXPR.strip().replace("MAX_STRING", str(MAX_TEXT)).replace("MAX_NAME1", str(MAX_NAME - 1))
    body = [f"{name} ::= {rule}" for name, rule in b.rules.items()]
    return "\n".join(head + core.splitlines() + body) + "\n"


def tool_returns(tools) -> dict[str, str]:
    """Callable name -> return key, for :func:`vistrace.agent.typeview.expr_type`."""
    return {t.name: key_of(t.returns) for t in tools}


__all__ = ["statement_grammar", "tool_returns"]
