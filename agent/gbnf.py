"""A small recogniser for GBNF grammars (the subset :mod:`vistrace.agent.grammar` writes).

llama.cpp applies a GBNF grammar token by token while it samples; it has no "does this text match"
call. This module answers that question in pure Python, so the program grammar can be tested against
the program library (and real model outputs) without a model, and so a caller can tell whether a
program could have come out of grammar-constrained decoding at all.

Supported: rules ``name ::= body`` (one per line; a body may continue on the next lines inside
parentheses), ``|`` alternation, grouping ``( )``, repetition ``* + ?``, string literals with
escapes (``\\n \\t \\r \\\\ \\" \\xHH``), character classes ``[a-z]`` / ``[^...]`` with escapes, and
``{n}`` / ``{m,}`` / ``{m,n}`` counts, and ``#`` comments. Not supported: ``.`` (any character).

Matching is by sets of end positions (memoised), so ambiguous grammars are fine; left recursion
is not supported (llama.cpp does not support it either).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from vistrace.errors import VistraceError


class GrammarSyntaxError(VistraceError):
    """The GBNF text could not be read; the message names the line and what was expected."""


@dataclass(frozen=True)
class _Lit:
    text: str


@dataclass(frozen=True)
class _Cls:
    ranges: tuple[tuple[str, str], ...]
    negated: bool

    def accepts(self, ch: str) -> bool:
        hit = any(lo <= ch <= hi for lo, hi in self.ranges)
        return hit != self.negated


@dataclass(frozen=True)
class _Ref:
    name: str


@dataclass(frozen=True)
class _Rep:
    item: object
    min: int
    max: int | None  # None: unbounded


@dataclass(frozen=True)
class _Seq:
    items: tuple


@dataclass(frozen=True)
class _Alt:
    options: tuple


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "^": "^",
            "'": "'", "/": "/"}


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, what: str) -> GrammarSyntaxError:
        line = self.text.count("\n", 0, self.pos) + 1
        col = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return GrammarSyntaxError(f"GBNF line {line}:{col}: {what}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, newlines: bool) -> None:
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            elif ch in " \t" or (newlines and ch in "\r\n"):
                self.pos += 1
            else:
                break

    def name(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] == "-"):
            self.pos += 1
        if start == self.pos:
            raise self.error("expected a rule name")
        return self.text[start:self.pos]

    def char(self) -> str:
        ch = self.peek()
        if not ch:
            raise self.error("unexpected end of grammar")
        self.pos += 1
        if ch != "\\":
            return ch
        esc = self.peek()
        self.pos += 1
        if esc == "x":
            code = self.text[self.pos:self.pos + 2]
            self.pos += 2
            return chr(int(code, 16))
        if esc == "u":
            code = self.text[self.pos:self.pos + 4]
            self.pos += 4
            return chr(int(code, 16))
        if esc in _ESCAPES:
            return _ESCAPES[esc]
        raise self.error(f"unknown escape '\\{esc}'")


def parse_gbnf(text: str) -> dict[str, object]:
    """Read GBNF text into rules (name -> matcher tree); raises :class:`GrammarSyntaxError`."""
    r = _Reader(text)
    rules: dict[str, object] = {}
    while True:
        r.skip(newlines=True)
        if r.pos >= len(text):
            break
        name = r.name()
        r.skip(newlines=False)
        if not text.startswith("::=", r.pos):
            raise r.error(f"expected '::=' after rule name '{name}'")
        r.pos += 3
        if name in rules:
            raise r.error(f"rule '{name}' is defined twice")
        rules[name] = _alternatives(r, nested=False)
    if "root" not in rules:
        raise GrammarSyntaxError("GBNF grammar has no 'root' rule")
    for name, body in rules.items():
        for ref in _refs(body):
            if ref not in rules:
                raise GrammarSyntaxError(f"GBNF rule '{name}' refers to undefined rule '{ref}'")
    return rules


def _alternatives(r: _Reader, nested: bool):
    options = [_sequence(r, nested)]
    while r.peek() == "|":
        r.pos += 1
        options.append(_sequence(r, nested))
    return options[0] if len(options) == 1 else _Alt(tuple(options))


def _sequence(r: _Reader, nested: bool):
    items = []
    while True:
        r.skip(newlines=nested)
        ch = r.peek()
        if not ch or ch in "|)" or ch in "\r\n":
            break
        if ch == '"':
            r.pos += 1
            chars = []
            while r.peek() != '"':
                if not r.peek():
                    raise r.error("string literal is not closed")
                chars.append(r.char())
            r.pos += 1
            item = _Lit("".join(chars))
        elif ch == "[":
            r.pos += 1
            negated = r.peek() == "^"
            if negated:
                r.pos += 1
            ranges = []
            while r.peek() != "]":
                if not r.peek():
                    raise r.error("character class is not closed")
                lo = r.char()
                hi = lo
                if r.peek() == "-" and r.text[r.pos + 1:r.pos + 2] != "]":
                    r.pos += 1
                    hi = r.char()
                ranges.append((lo, hi))
            r.pos += 1
            item = _Cls(tuple(ranges), negated)
        elif ch == "(":
            r.pos += 1
            item = _alternatives(r, nested=True)
            r.skip(newlines=True)
            if r.peek() != ")":
                raise r.error("expected ')'")
            r.pos += 1
        elif ch.isalnum() or ch == "-":
            start = r.pos
            name = r.name()
            r.skip(newlines=False)
            if r.text.startswith("::=", r.pos):  # the next rule starts: this line ended
                r.pos = start
                break
            item = _Ref(name)
        else:
            raise r.error(f"unexpected character {ch!r}")
        r.skip(newlines=False)
        op = r.peek()
        if op in ("*", "+", "?"):
            r.pos += 1
            item = _Rep(item, 0 if op in "*?" else 1, 1 if op == "?" else None)
        elif op == "{":
            item = _Rep(item, *_counts(r))
        items.append(item)
    return items[0] if len(items) == 1 else _Seq(tuple(items))


def _counts(r: _Reader) -> tuple[int, int | None]:
    """``{n}``, ``{m,}``, ``{m,n}`` after an item."""
    end = r.text.find("}", r.pos)
    if end < 0:
        raise r.error("'{' of a repetition count is not closed")
    body = r.text[r.pos + 1:end].replace(" ", "")
    r.pos = end + 1
    try:
        if "," not in body:
            n = int(body)
            return n, n
        lo, hi = body.split(",", 1)
        return int(lo or 0), (int(hi) if hi else None)
    except ValueError:
        raise r.error(f"bad repetition count {{{body}}}") from None


def _refs(node) -> set[str]:
    if isinstance(node, _Ref):
        return {node.name}
    if isinstance(node, _Rep):
        return _refs(node.item)
    if isinstance(node, (_Seq, _Alt)):
        parts = node.items if isinstance(node, _Seq) else node.options
        return set().union(*(_refs(p) for p in parts))
    return set()


class Recognizer:
    """Whether a text is in the language of a GBNF grammar (from the start rule ``root``)."""

    def __init__(self, grammar: str):
        self.rules = parse_gbnf(grammar)

    def accepts(self, text: str, start: str = "root") -> bool:
        return len(text) in self._ends_from(text, start)

    def longest_prefix(self, text: str, start: str = "root") -> int:
        """How many characters of ``text`` a complete match of the grammar can cover (for error messages)."""
        ends = self._ends_from(text, start)
        return max(ends) if ends else 0

    def _ends_from(self, text: str, start: str) -> frozenset[int]:
        if start not in self.rules:
            raise GrammarSyntaxError(f"GBNF grammar has no rule '{start}'")
        memo: dict[tuple[int, int], frozenset[int]] = {}
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(max(old, 20000))
        try:
            return self._ends(_Ref(start), 0, text, memo)
        finally:
            sys.setrecursionlimit(old)

    def _ends(self, node, pos: int, text: str, memo) -> frozenset[int]:
        if isinstance(node, _Lit):
            return frozenset({pos + len(node.text)}) if text.startswith(node.text, pos) else frozenset()
        if isinstance(node, _Cls):
            return frozenset({pos + 1}) if pos < len(text) and node.accepts(text[pos]) else frozenset()
        key = (id(node), pos)
        if key in memo:
            return memo[key]
        memo[key] = frozenset()  # guards against (unsupported) left recursion
        if isinstance(node, _Ref):
            out = self._ends(self.rules[node.name], pos, text, memo)
        elif isinstance(node, _Alt):
            out = frozenset().union(*(self._ends(o, pos, text, memo) for o in node.options))
        elif isinstance(node, _Seq):
            current = frozenset({pos})
            for item in node.items:
                current = frozenset().union(*(self._ends(item, p, text, memo) for p in current))
                if not current:
                    break
            out = current
        elif isinstance(node, _Rep):
            out = set({pos}) if node.min == 0 else set()
            frontier = {pos}
            n = 0
            while frontier and (node.max is None or n < node.max):
                n += 1
                step = set().union(*(self._ends(node.item, p, text, memo) for p in frontier))
                if n >= node.min:
                    new = step - out
                    out |= step
                    frontier = new
                else:
                    frontier = step
            out = frozenset(out)
        else:  # pragma: no cover - the parser makes no other nodes
            raise TypeError(node)
        memo[key] = out
        return out


def accepts(grammar: str, text: str) -> bool:
    """Convenience: ``Recognizer(grammar).accepts(text)``."""
    return Recognizer(grammar).accepts(text)
