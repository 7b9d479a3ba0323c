"""Find the program in what a model answered: fences, prose, labels, truncation, a missing ``result``.

:func:`extract_program` never runs anything; it only reads text and parses it with :mod:`ast`. The
steps, in order:

0. **Size**: an answer longer than ``max_chars`` (:data:`MAX_REPLY_CHARS` unless configured; the
   agent's ``max_reply_chars``) is refused with :class:`ReplyTooLong` before anything else is done
   with it: a planner program is a few hundred characters, and searching megabytes of text for one
   would cost unbounded time. Within the cap every search below is bounded too (:data:`PARSE_BUDGET`
   parses and :data:`PARSE_CHARS` characters parsed for the whole answer, whatever its fences).
1. **Text**: bytes are decoded as UTF-8 with replacement characters; Windows and old-Mac newlines and
   the Unicode line breaks (U+0085, U+2028, U+2029) become ``\\n``; terminal escape sequences
   (``ESC [31m``), NUL and other control characters (C0 except tab and newline, C1), bidirectional
   overrides and zero-width characters (which make a program read differently from what runs) are
   dropped; chat template tokens such as ``<|im_end|>`` are removed.
2. **Candidates**: every fenced block (```` ``` ````, ```` ```python ````, ``~~~``; an unclosed fence
   runs to the end of the text). Without fences, the whole text, after a leading label line such as
   ``Program:`` / ``Answer:`` (text after the colon on the same line is kept).
3. **Cleaning a candidate**: leading tabs become four spaces and the common indentation is removed;
   lines before the first line that looks like code are dropped (prose); then lines are dropped from
   the end until the rest parses (trailing prose, or a last line cut off by the token limit); when
   nothing parses from that line on, the next line that looks like code is tried as the start.
   Top-level ``import`` / ``from ... import`` lines are dropped: programs need no imports (tools are
   available by name) and small models add them out of habit.  :func:`extract` also returns the lines
   cut from the end (:class:`Extraction`), and :func:`ends_mid_statement` tells an answer that stops
   inside a statement: the agent refuses a program that lost a statement (``result = crop(image, b``
   cut off, ``result = = 3`` broken) rather than run the statements before it.
4. **The planner form**: a candidate with a top-level ``def`` or ``class`` is not taken: the planner
   is asked for plain statements, and a small model that writes functions is almost always writing
   general Python (``def detect(...)`` re-implementing a tool, ``image.convert(...)``) that ``check``
   cannot judge because its parameters have no types. When that is all the answer holds,
   :class:`NoProgram` says so, so the repair turn asks for plain statements.
5. **The result rule**:

   - a top-level assignment to ``result`` (or VisProg's ``FINAL_RESULT``) anywhere: unchanged;
   - otherwise, trailing bare names that are never assigned (stray prose words such as ``Done``)
     are dropped, and then
   - last statement an expression, e.g. ``dogs.count`` or ``print(dogs.count)``: it becomes
     ``result = dogs.count`` (the sandbox already returns a script's last expression; this says it);
   - last statement an assignment to one other name, e.g. ``total = ...``: ``result = total`` is
     appended — the last assigned name is the result.

6. **Choice**: the best candidate wins — one that assigns ``result`` as written over one that only
   parses (and was completed by the result rule); among equals, the last one (models tend to correct
   themselves further down).

When nothing parses, :class:`NoProgram` (an :class:`~vistrace.agent.llm.base.LLMError`) is raised with
a short quote of the text, so the repair loop can tell the model what went wrong.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass

from .llm.base import LLMError

MAX_REPLY_CHARS = 32_000   # default cap on an answer's size (a planner program is a few hundred characters)
BYTES_PER_CHAR = 4         # an answer given as bytes is refused unread beyond this many bytes per allowed char
PARSE_BUDGET = 2000        # parses tried for one answer (all its candidates together) when cutting prose away
PARSE_CHARS = 2_000_000    # characters parsed for one answer, all parses together (ast.parse reads ~1 MB/s)
RESULT_TARGETS = ("result", "FINAL_RESULT")

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+.-]*)[^\n]*$", re.M)
_SPECIAL_TOKENS = re.compile(r"<\|[A-Za-z0-9_]+\|>|</?s>")
# terminal escapes: CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-character ESC sequences
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\n]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_LINE_BREAK = re.compile(r"\r\n|[\r\x85\u2028\u2029]")
# C0 (but tab, newline), DEL, C1; bidirectional marks, embeddings, overrides and isolates; zero-width characters
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:program|python|code|answer|solution|final program|corrected program)"
                    r"(?:\*\*)?\s*:(?:\*\*)?\s*", re.I)
_CODE_START = re.compile(r"^\s*(?:[A-Za-z_][\w.\[\]'\"]*\s*(?:[-+*/]?=(?!=)|\()|def\s|class\s|if\s|for\s|while\s|"
                         r"import\s|from\s+\w+\s+import\s|#|\"\"\"|''')")
_CODE_LANGS = {"", "python", "py", "python3", "vp", "vistrace", "code"}


class NoProgram(LLMError):
    """The model's answer holds no program (empty, prose only, or nothing that parses)."""


class ReplyTooLong(NoProgram):
    """The model's answer is longer than the cap on an answer's size (``max_reply_chars``); it was not
    searched for a program.  ``size`` is what came (in ``unit``), ``limit`` the cap in characters."""

    def __init__(self, size: int, limit: int, unit: str = "characters", setting: str = "max_reply_chars",
                 more: bool = False):
        size_text = "" if more else f"({size:,} {unit}) "
        super().__init__(f"the model's answer {size_text}is longer than the limit of {limit:,} {unit} "
                         f"({setting}); it was refused unread",
                         hint=f"reply with the program only, a few short lines; raise {setting} only if "
                              "the model really needs more room")
        self.size = size
        self.limit = limit
        self.unit = unit


def check_reply_size(text: object, max_chars: int = MAX_REPLY_CHARS) -> None:
    """Step 0: raise :class:`ReplyTooLong` when ``text`` (str or bytes) is over ``max_chars`` characters
    (bytes: over ``BYTES_PER_CHAR * max_chars`` bytes, before decoding them)."""
    limit = int(max_chars)
    if isinstance(text, str):
        if len(text) > limit:
            raise ReplyTooLong(len(text), limit)
    elif isinstance(text, (bytes, bytearray, memoryview)):
        size = len(text) if not isinstance(text, memoryview) else text.nbytes
        if size > BYTES_PER_CHAR * limit:
            raise ReplyTooLong(size, BYTES_PER_CHAR * limit, unit="bytes")


def clip_text(text: str, n: int) -> str:
    """``text`` cut to ``n`` characters, saying how long it was (for what is kept of a refused answer)."""
    if len(text) <= n:
        return text
    return text[:n] + f"\n… [cut: {len(text):,} characters in all]"


def _quote(text: str, n: int = 80) -> str:
    flat = " ".join(text[: 4 * n].split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def normalize_text(text: str | bytes, max_chars: int = MAX_REPLY_CHARS) -> str:
    """Steps 0 and 1: refuse an answer over ``max_chars``; decode bytes, unify newlines, drop terminal
    escapes, control, bidirectional and zero-width characters and chat template tokens."""
    if not isinstance(text, (str, bytes, bytearray, memoryview)):
        raise NoProgram(f"the model's answer is not text but {type(text).__name__}")
    check_reply_size(text, max_chars)
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8", errors="replace")
        check_reply_size(text, max_chars)
    text = text.encode("utf-8", errors="replace").decode("utf-8", errors="replace")  # lone surrogates
    text = _LINE_BREAK.sub("\n", text)
    text = _SPECIAL_TOKENS.sub("", _ANSI.sub("", text))
    return _CONTROL.sub("", text)


def _fenced_blocks(text: str) -> list[str] | None:
    """Step 2: the contents of the fenced blocks, or None when the text has no fence (linear in the marks)."""
    marks = list(_FENCE.finditer(text))
    if not marks:
        return None
    blocks: list[str] = []
    i = 0
    while i < len(marks):
        opening = marks[i]
        fence, lang = opening.group(1), opening.group(2).lower()
        j = i + 1
        while j < len(marks) and not (marks[j].group(1)[0] == fence[0] and len(marks[j].group(1)) >= len(fence)
                                      and not marks[j].group(2)):
            j += 1
        end = marks[j] if j < len(marks) else None
        body = text[opening.end():end.start() if end else len(text)]
        if lang in _CODE_LANGS:
            blocks.append(body.strip("\n"))
        if end is None:
            break
        i = j + 1
    return blocks


def _strip_label(text: str) -> str:
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        m = _LABEL.match(line)
        if m:
            lines[i] = line[m.end():]
        break
    return "\n".join(lines)


def _expand_leading_tabs(line: str) -> str:
    m = re.match(r"^[ \t]*", line)
    lead = m.group(0)
    return lead.expandtabs(4) + line[len(lead):]


def _parse(source: str) -> tuple[ast.Module | None, int | None]:
    """(tree, None) when ``source`` parses into at least one statement, else (None, the 1-based line of
    the syntax error when Python names one)."""
    if not source.strip():
        return None, None
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        return None, exc.lineno
    except (ValueError, RecursionError, MemoryError):
        return None, None
    return (tree if tree.body else None), None


def _parses(source: str) -> ast.Module | None:
    return _parse(source)[0]


class _Budget:
    """What one answer may cost the search: parses and characters parsed (all candidates together)."""

    def __init__(self, parses: int = PARSE_BUDGET, chars: int = PARSE_CHARS):
        self.parses = parses
        self.chars = chars

    def take(self, source: str) -> bool:
        if self.parses <= 0 or self.chars < len(source):
            self.parses = 0
            return False
        self.parses -= 1
        self.chars -= len(source)
        return True

    @property
    def spent(self) -> bool:
        return self.parses <= 0


def _looks_like_code(line: str) -> bool:
    stripped = line.strip()
    if not stripped:
        return False
    if _CODE_START.match(stripped):
        return True
    tree = _parses(stripped)
    return tree is not None and not _is_prose_stmt(tree.body[0])


def _is_prose_stmt(stmt: ast.stmt) -> bool:
    """A statement that parses but is almost certainly prose: a bare word or a bare constant."""
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Name, ast.Constant))


def _clean(candidate: str, budget: _Budget | None = None) -> tuple[str, ast.Module, tuple[str, ...]] | None:
    """Step 3: cut prose before and after the code; returns (source, tree, the non-blank lines cut from
    the end) or None.

    Tries each line that looks like code as the start (prose may look like a call: "Steps (short)"),
    and for each start drops lines from the end until the rest parses.  A syntax error on line L means
    no text holding line L whole parses, so the search goes on with the lines before L at once (one
    parse per error, not one per line).  It stops when ``budget`` (shared by all candidates) is spent.
    """
    budget = budget if budget is not None else _Budget()
    lines = [_expand_leading_tabs(x.rstrip()) for x in candidate.split("\n")]
    starts = [i for i, line in enumerate(lines) if _looks_like_code(line)]
    for start in starts:
        end = len(lines)
        while end > start:
            source = textwrap.dedent("\n".join(lines[start:end])).strip("\n")
            if not budget.take(source):
                return None
            tree, error_line = _parse(source)
            if tree is not None and not all(_is_prose_stmt(st) or isinstance(st, ast.Pass) for st in tree.body):
                return source, tree, tuple(x.strip() for x in lines[end:] if x.strip())
            # the source begins with lines[start] (a line with code), so its line L is lines[start + L - 1]
            end = min(end - 1, start + error_line - 1) if error_line and error_line >= 1 else end - 1
    return None


def _drop_imports(source: str, tree: ast.Module) -> tuple[str, ast.Module]:
    imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    if not imports:
        return source, tree
    lines = source.split("\n")
    for s in imports:
        for ln in range(s.lineno - 1, (s.end_lineno or s.lineno)):
            lines[ln] = None
    kept = "\n".join(x for x in lines if x is not None).strip("\n")
    tree2 = _parses(kept)
    return (kept, tree2) if tree2 is not None else (source, tree)


def _assigned_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, ast.Assign):
        return [t.id for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


def _lines_of(source: str, stmt: ast.stmt) -> tuple[int, int]:
    return stmt.lineno - 1, (stmt.end_lineno or stmt.lineno)


def apply_result_rule(source: str, tree: ast.Module) -> str:
    """Step 4: make sure a plain-statement program says which value is the result (see the module doc)."""
    body = tree.body
    assigned = {n for s in body for n in _assigned_names(s)}
    if assigned & set(RESULT_TARGETS):
        return source
    lines = source.split("\n")
    while body and _is_prose_stmt(body[-1]) and not (isinstance(body[-1].value, ast.Name)
                                                      and body[-1].value.id in assigned):
        first, last = _lines_of(source, body[-1])
        del lines[first:last]
        body = body[:-1]
    if not body:
        return "\n".join(lines).strip("\n")
    stmt = body[-1]
    first, last = _lines_of(source, stmt)
    if isinstance(stmt, ast.Expr):
        value = stmt.value
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "print" \
                and len(value.args) == 1 and not value.keywords:
            value = value.args[0]
        text = ast.get_source_segment(source, value) or ast.unparse(value)
        indent = re.match(r"^\s*", lines[first]).group(0)
        lines[first:last] = [f"{indent}result = {text}"]
    else:
        names = _assigned_names(stmt)
        if len(names) == 1 and names[0] not in RESULT_TARGETS:
            lines = lines[:last] + [f"result = {names[0]}"] + lines[last:]
    return "\n".join(lines).strip("\n")


def _candidates(text: str) -> list[str]:
    blocks = _fenced_blocks(text)
    if blocks is None:
        return [_strip_label(text)]
    if not blocks:  # only non-code fences (e.g. ```text): try the text around and inside them
        return [_strip_label(_FENCE.sub("", text))]
    return blocks


def _rank(source: str) -> int:
    tree = _parses(source)
    if tree is None:
        return 0
    assigned = {n for s in tree.body for n in _assigned_names(s)}
    if assigned & set(RESULT_TARGETS):
        return 2
    return 1


_ASSIGNMENT = re.compile(r"^\s*[^\W\d]\w*(?:\s*,\s*[^\W\d]\w*)*\s*(?:[-+*/%@&|^]|//|\*\*)?=(?!=)")


@dataclass(frozen=True)
class Extraction:
    """The program found in an answer, and the non-blank lines cut from the end of the block it came from
    (trailing prose — or statements that do not parse)."""

    program: str
    dropped: tuple[str, ...] = ()

    @property
    def lost_statement(self) -> str | None:
        """The first cut line that is an assignment (``name = ...``): code, not prose, which the program
        lost because it does not parse; None when every cut line reads as prose."""
        return next((line for line in self.dropped if _ASSIGNMENT.match(line)), None)


def syntax_message(line: str) -> str:
    """Python's complaint about one line, e.g. ``invalid syntax`` ('' when it parses)."""
    try:
        ast.parse(line.strip())
    except SyntaxError as exc:
        return str(exc.msg)
    except (ValueError, RecursionError, MemoryError) as exc:
        return type(exc).__name__
    return ""


def extract_program(text: str | bytes, max_chars: int = MAX_REPLY_CHARS) -> str:
    """The program in a model's answer, as text ending with a newline; raises :class:`NoProgram`
    (:class:`ReplyTooLong` for an answer over ``max_chars`` characters)."""
    return extract(text, max_chars).program


def extract(text: str | bytes, max_chars: int = MAX_REPLY_CHARS) -> Extraction:
    """:func:`extract_program` with what was cut from the end of the winning block (see :class:`Extraction`)."""
    norm = normalize_text(text, max_chars)
    if not norm.strip():
        raise NoProgram("the model's answer is empty", hint="ask again; check max_tokens and the stop words")
    best: tuple[int, str, tuple[str, ...]] | None = None
    defines = None
    budget = _Budget()
    for cand in _candidates(norm):
        cleaned = _clean(cand, budget)
        if cleaned is None:
            continue
        source, tree = _drop_imports(*cleaned[:2])
        definition = next((s for s in tree.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                   ast.ClassDef))), None)
        if definition is not None:
            defines = defines or definition
            continue
        rank = _rank(source)  # as written: a block that assigns result itself beats one the rule completes
        program = apply_result_rule(source, tree)
        if _parses(program) is None:
            continue
        if rank and (best is None or rank >= best[0]):
            best = (rank, program, cleaned[2])
    if best is None and defines is not None:
        kind = "class" if isinstance(defines, ast.ClassDef) else "def"
        raise NoProgram(f"the answer defines {kind} {defines.name}(...) instead of giving plain statements",
                        hint="no def or class: write one statement per line using the inputs by name, "
                             "the last one `result = ...`")
    if best is None:
        searched = " (the search for one was cut short: the answer is too long or too tangled)" if budget.spent else ""
        raise NoProgram(f"no program found in the model's answer{searched}: {_quote(norm)!r}",
                        hint="answer with the program only: one statement per line, the last one `result = ...`")
    return Extraction(best[1] + "\n", best[2])




_CLOSE = {"(": ")", "[": "]", "{": "}"}
_CONTINUED = re.compile(r"(?:[-+*/%@&|^~<>=,.:\\]|\b(?:and|or|not|in|is|if|else|for|lambda))\s*$")
TAIL_LINES = 10   # lines looked back from the end for the statement an answer was cut off in


def _open_tail(tail: str) -> str | None:
    """What would close ``tail``: the open string's quote and the open brackets' closers, in order
    ('' when nothing is open); None when the text is broken rather than unfinished (a closer that
    matches nothing, a one-line string running into a new line)."""
    stack: list[str] = []
    quote = None
    i, n = 0, len(tail)
    while i < n:
        c = tail[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if tail.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            if c == "\n" and len(quote) == 1:
                return None
            i += 1
            continue
        if c == "#":
            nl = tail.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if c in "'\"":
            quote = c * 3 if tail.startswith(c * 3, i) else c
            i += len(quote)
            continue
        if c in _CLOSE:
            stack.append(_CLOSE[c])
        elif c in ")]}":
            if not stack or stack.pop() != c:
                return None
        i += 1
    return (quote or "") + "".join(reversed(stack))


def ends_mid_statement(text: str | bytes, max_chars: int = MAX_REPLY_CHARS) -> str | None:
    """The last line of an answer that stops in the middle of a statement (an open bracket or string,
    a trailing operator or dot: the text was cut off, whatever the model's finish reason), else None.

    ``result = crop(image, b`` or ``result = f'{n} do`` qualify: closing what is open (or adding an
    operand) makes the last lines parse as a statement.  Prose that merely fails to parse does not,
    and neither does an answer whose last line closes a fence.  The extractor drops such a line (to
    cut trailing prose), so a program found in a cut-off answer has lost its end; the agent asks again.
    """
    norm = normalize_text(text, max_chars).rstrip()
    lines = norm.split("\n")
    if not lines or not lines[-1].strip() or _FENCE.fullmatch(lines[-1]):
        return None
    for k in range(1, min(TAIL_LINES, len(lines)) + 1):
        if not _looks_like_code(lines[-k]):   # the statement begins on a line with code, not prose
            continue
        tail = textwrap.dedent("\n".join(_expand_leading_tabs(x) for x in lines[-k:]))
        closers = _open_tail(tail)
        if closers is None:
            continue
        # without an open bracket or string a statement ends with its line: only the last line may be unfinished
        if not closers and (k > 1 or _CONTINUED.search(tail[-200:]) is None):
            continue
        for filler in ("", " 0", "x"):
            tree = _parses(_LABEL.sub("", tail, count=1) + filler + closers)
            if tree is not None and not _is_prose_stmt(tree.body[-1]):
                return lines[-1].strip()
    return None


def plan_problems(program: str, input_names, registry=None) -> list:
    """Problems of a planned program that ``check`` cannot see because it does not know the request.

    ``check`` takes every name a script reads before assigning as an input, so ``Image.open(...)`` or
    ``pytesseract.image_to_string(image)`` pass it and fail only when run ("needs input 'Image'").
    Knowing the request's inputs, each such name is a problem here (line:col, with the inputs named),
    and so is a plain-statement program that never assigns ``result``. Returns sandbox ``Problem``s
    (empty when the program does not parse: ``check`` reports that).
    """
    from vistrace.api import _registry
    from vistrace.errors import ProgramError
    from vistrace.sandbox import Problem, check, parse

    try:
        prog = parse(program)
    except ProgramError:
        return []
    check(prog, _registry(registry))
    allowed = set(input_names)
    shown = ", ".join(sorted(allowed)) or "none"
    problems = []
    if prog.style != "function":
        first_use: dict[str, ast.Name] = {}
        for node in ast.walk(prog.tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in first_use:
                first_use[node.id] = node
        for spec in prog.inputs:
            if spec.name in allowed:
                continue
            node = first_use.get(spec.name)
            problems.append(Problem(getattr(node, "lineno", 1), getattr(node, "col_offset", 0),
                                    f"name '{spec.name}' is not defined", text=spec.name, code="undefined",
                                    hint=f"the inputs are: {shown}; tools and values need no import"))
        assigned = {n for s in prog.tree.body for n in _assigned_names(s)}
        if prog.style == "script" and not assigned & set(RESULT_TARGETS):
            last = prog.tree.body[-1] if prog.tree.body else None
            problems.append(Problem(getattr(last, "lineno", 1), 0, "the program never assigns 'result'",
                                    code="no-result", hint="end with a line `result = ...` holding the answer"))
    return sorted(problems, key=lambda p: (p.line, p.col))


__all__ = ["NoProgram", "ReplyTooLong", "MAX_REPLY_CHARS", "Extraction", "extract", "extract_program", "check_reply_size", "normalize_text",
           "apply_result_rule", "plan_problems", "ends_mid_statement"]
