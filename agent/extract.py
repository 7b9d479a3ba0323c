"""Find the program in what a model answered: fences, prose, labels, truncation, a missing ``result``.

:func:`extract_program` never runs anything; it only reads text and parses it with :mod:`ast`. The
steps, in order:

1. **Text**: bytes are decoded as UTF-8 with replacement characters; Windows and old-Mac newlines
   become ``\\n``; NUL and other control characters (except tab and newline) are dropped; chat
   template tokens such as ``<|im_end|>`` are removed.
2. **Candidates**: every fenced block (```` ``` ````, ```` ```python ````, ``~~~``; an unclosed fence
   runs to the end of the text). Without fences, the whole text, after a leading label line such as
   ``Program:`` / ``Answer:`` (text after the colon on the same line is kept).
3. **Cleaning a candidate**: leading tabs become four spaces and the common indentation is removed;
   lines before the first line that looks like code are dropped (prose); then lines are dropped from
   the end until the rest parses (trailing prose, or a last line cut off by the token limit); when
   nothing parses from that line on, the next line that looks like code is tried as the start.
   Top-level ``import`` / ``from ... import`` lines are dropped: programs need no imports (tools are
   available by name) and small models add them out of habit.
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

from .llm.base import LLMError

MAX_CHARS = 100_000          # longer answers are cut: a planner program is a few hundred characters
MAX_LINES = 400
PARSE_BUDGET = 2000      # parses tried per candidate when cutting prose away
RESULT_TARGETS = ("result", "FINAL_RESULT")

_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([A-Za-z0-9_+.-]*)[^\n]*$", re.M)
_SPECIAL_TOKENS = re.compile(r"<\|[A-Za-z0-9_]+\|>|</?s>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:program|python|code|answer|solution|final program|corrected program)"
                    r"(?:\*\*)?\s*:(?:\*\*)?\s*", re.I)
_CODE_START = re.compile(r"^\s*(?:[A-Za-z_][\w.\[\]'\"]*\s*(?:[-+*/]?=(?!=)|\()|def\s|class\s|if\s|for\s|while\s|"
                         r"import\s|from\s+\w+\s+import\s|#|\"\"\"|''')")
_CODE_LANGS = {"", "python", "py", "python3", "vp", "vistrace", "code"}


class NoProgram(LLMError):
    """The model's answer holds no program (empty, prose only, or nothing that parses)."""


def _quote(text: str, n: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def normalize_text(text: str | bytes) -> str:
    """Step 1: decode bytes, unify newlines, drop control characters and chat template tokens."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        raise NoProgram(f"the model's answer is not text but {type(text).__name__}")
    text = text[:MAX_CHARS]
    text = text.encode("utf-8", errors="replace").decode("utf-8", errors="replace")  # lone surrogates
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    text = _SPECIAL_TOKENS.sub("", text)
    return _CONTROL.sub("", text)


def _fenced_blocks(text: str) -> list[str] | None:
    """Step 2: the contents of the fenced blocks, or None when the text has no fence."""
    marks = list(_FENCE.finditer(text))
    if not marks:
        return None
    blocks: list[str] = []
    i = 0
    while i < len(marks):
        opening = marks[i]
        fence, lang = opening.group(1), opening.group(2).lower()
        end = next((m for m in marks[i + 1:] if m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence)
                    and not m.group(2)), None)
        body = text[opening.end():end.start() if end else len(text)]
        if lang in _CODE_LANGS:
            blocks.append(body.strip("\n"))
        if end is None:
            break
        i = marks.index(end) + 1
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


def _parses(source: str) -> ast.Module | None:
    if not source.strip():
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return tree if tree.body else None


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


def _clean(candidate: str) -> tuple[str, ast.Module] | None:
    """Step 3: cut prose before and after the code; returns (source, tree) or None.

    Tries each line that looks like code as the start (prose may look like a call: "Steps (short)"),
    and for each start drops lines from the end until the rest parses; at most ``PARSE_BUDGET`` parses.
    """
    lines = [_expand_leading_tabs(x.rstrip()) for x in candidate.split("\n")][:MAX_LINES]
    starts = [i for i, line in enumerate(lines) if _looks_like_code(line)]
    budget = PARSE_BUDGET
    for start in starts:
        end = len(lines)
        while end > start and budget > 0:
            budget -= 1
            source = textwrap.dedent("\n".join(lines[start:end])).strip("\n")
            tree = _parses(source)
            if tree is not None and not all(_is_prose_stmt(st) or isinstance(st, ast.Pass) for st in tree.body):
                return source, tree
            end -= 1
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


def extract_program(text: str | bytes) -> str:
    """The program in a model's answer, as text ending with a newline; raises :class:`NoProgram`."""
    norm = normalize_text(text)
    if not norm.strip():
        raise NoProgram("the model's answer is empty", hint="ask again; check max_tokens and the stop words")
    best: tuple[int, str] | None = None
    defines = None
    for cand in _candidates(norm):
        cleaned = _clean(cand)
        if cleaned is None:
            continue
        source, tree = _drop_imports(*cleaned)
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
            best = (rank, program)
    if best is None and defines is not None:
        kind = "class" if isinstance(defines, ast.ClassDef) else "def"
        raise NoProgram(f"the answer defines {kind} {defines.name}(...) instead of giving plain statements",
                        hint="no def or class: write one statement per line using the inputs by name, "
                             "the last one `result = ...`")
    if best is None:
        raise NoProgram(f"no program found in the model's answer: {_quote(norm)!r}",
                        hint="answer with the program only: one statement per line, the last one `result = ...`")
    return best[1] + "\n"




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


__all__ = ["NoProgram", "extract_program", "normalize_text", "apply_result_rule", "plan_problems"]
