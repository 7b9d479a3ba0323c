"""Parsing: program text -> :class:`Program` (syntax tree, style, entry function, declared inputs).

Three published program styles are accepted unchanged, because all three are Python syntax:
VisProg lines (``BOX0=LOC(image=IMAGE,object='dog')``), VPEval's ``;``-separated calls, and
vistrace functions (``def f(image: Image, question: str) -> str:``).  The text is only ever parsed
with :mod:`ast`; it is never compiled or executed by Python.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vistrace.errors import ProgramError

from .limits import Limits
from .problems import Problem
from .safety import node_depth

Style = Literal["function", "visprog", "vpeval", "script"]

VPEVAL_MODULES = frozenset({"objectEval", "countEval", "spatialEval", "scaleEval", "textEval", "vqa"})
SPECIAL_FORMS = frozenset({"EVAL", "RESULT"})  # VisProg steps the interpreter itself performs
RESULT_NAMES = ("FINAL_RESULT", "result", "RESULT")


@dataclass(frozen=True)
class InputSpec:
    name: str
    annotation: str = ""        # annotation text as written ('' when the style has none)
    required: bool = True
    default: object = None


@dataclass
class Program:
    """A parsed program.  ``inputs`` is filled for function style; for the other styles the
    checker finds the free names (e.g. VisProg's IMAGE, VPEval's image)."""

    source: str
    tree: ast.Module
    style: Style
    name: str = "program"
    doc: str = ""
    entry: ast.FunctionDef | None = None
    functions: dict[str, ast.FunctionDef] = field(default_factory=dict)
    inputs: list[InputSpec] = field(default_factory=list)
    path: str | None = None
    compiled: tuple | None = field(default=None, repr=False, compare=False)  # (tools, Compiler), see interpreter

    def segment(self, node: ast.AST) -> str:
        """The source text of a node (first line only for multi-line statements)."""
        text = ast.get_source_segment(self.source, node) or ""
        return text


def load_source(program: str | Path) -> tuple[str, str, str | None]:
    """Accept program text or a path; returns (source, name, path)."""
    if isinstance(program, Path) or (
        isinstance(program, str) and "\n" not in program and program.endswith((".vp", ".py", ".txt"))
    ):
        p = Path(program)
        if not p.exists():
            raise ProgramError(f"program file not found: {p}", hint="give a path to a .vp file or the program text")
        if p.is_dir():
            raise ProgramError(f"expected a program file, got a directory: {p}", hint="give a path to a .vp file")
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ProgramError(f"program file {p} is not UTF-8 text: {exc}") from None
        except OSError as exc:
            raise ProgramError(f"cannot read program file {p}: {exc.strerror or exc}") from None
        return text, p.stem, str(p)
    if not isinstance(program, str):
        raise ProgramError(f"a program must be text or a path, got {type(program).__name__}")
    return program, "program", None


def _syntax_hint(source: str, exc: SyntaxError) -> str | None:
    line = (exc.text or "").rstrip("\n")
    if re.search(r":\s*;", source):
        return ("VPEval programs are ';'-separated calls on one line; an if/else block cannot be written "
                "that way — put each statement on its own line")
    # An apostrophe inside a '...' string closes it early; the error then shows up later on the line.
    offset = _offset(source, exc.lineno or 1, (exc.offset or 1) - 1)
    apostrophe = re.search(r"[A-Za-z]{2}'[A-Za-z]", source[:offset + 1])
    if apostrophe:
        word = re.search(r"\w+'\w+", source[max(0, apostrophe.start() - 30):apostrophe.end() + 30])
        shown = word.group(0) if word else apostrophe.group(0)
        lno = source.count("\n", 0, apostrophe.start()) + 1
        col = apostrophe.start() - (source.rfind("\n", 0, apostrophe.start()) + 1) + 2
        return (f"the quote in {shown!r} at line {lno}:{col} ends its '...' string early; "
                "write \\' or use \"...\" for that string")
    if "invalid character" in str(exc.msg) and ("’" in line or "‘" in line or "“" in line):
        return "typographic quotes are not Python quotes; use ' or \""
    if "was never closed" in str(exc.msg) or "unexpected EOF" in str(exc.msg):
        return "a bracket or quote is not closed"
    return None


def _offset(source: str, line: int, col: int) -> int:
    lines = source.splitlines(keepends=True)
    return sum(len(x) for x in lines[: line - 1]) + max(col, 0)


def parse(program: str | Path, *, limits: Limits | None = None, name: str | None = None) -> Program:
    """Parse program text (or a file) into a :class:`Program`.

    Raises :class:`ProgramError` with one :class:`Problem` (line:col, text, hint) on a syntax error.
    """
    limits = limits or Limits()
    source, default_name, path = load_source(program)
    name = name or default_name
    if len(source) > limits.max_source_chars:
        prob = Problem(1, 0, f"program text has {len(source)} characters; the limit is {limits.max_source_chars}",
                       code="too-long", hint="raise the limit max_source_chars")
        raise ProgramError(prob.message, [prob])
    if "\x00" in source:
        prob = Problem(1, 0, "program text contains a NUL character", code="syntax")
        raise ProgramError(prob.message, [prob])
    try:
        tree = ast.parse(source, filename=path or "<program>", mode="exec")
    except SyntaxError as exc:
        line_no = exc.lineno or 1
        col = max((exc.offset or 1) - 1, 0)
        text = (exc.text or source.splitlines()[line_no - 1] if source.splitlines() else "").strip()
        prob = Problem(line_no, col, f"syntax error: {exc.msg}", text=text[max(0, col - 40): col + 40],
                       hint=_syntax_hint(source, exc), code="syntax")
        raise ProgramError(f"syntax error at line {line_no}:{col + 1}: {exc.msg}", [prob]) from None
    except (RecursionError, MemoryError):
        prob = Problem(1, 0, "program nests too deeply to parse", code="too-deep",
                       hint=f"keep nesting under {limits.max_nesting} levels")
        raise ProgramError(prob.message, [prob]) from None
    depth = node_depth(tree, limits.max_nesting)
    if depth > limits.max_nesting:
        prob = Problem(1, 0, f"program nests deeper than {limits.max_nesting} levels", code="too-deep",
                       hint="split deep expressions into several assignments, or raise max_nesting")
        raise ProgramError(prob.message, [prob])
    return _build(source, tree, name, path)


def _build(source: str, tree: ast.Module, name: str, path: str | None) -> Program:
    body = list(tree.body)
    doc = ""
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = body[0].value.value.strip()
        body = body[1:]
    functions = {s.name: s for s in body if isinstance(s, ast.FunctionDef)}
    style = detect_style(body)
    prog = Program(source=source, tree=tree, style=style, name=name, doc=doc, functions=functions, path=path)
    if style == "function":
        entry = functions.get("main") or functions.get(name) or [s for s in body if isinstance(s, ast.FunctionDef)][-1]
        prog.entry = entry
        prog.name = name if name != "program" else entry.name
        prog.doc = ast.get_docstring(entry) or doc
        prog.inputs = _function_inputs(entry)
    return prog


def detect_style(body: list[ast.stmt]) -> Style:
    if body and all(isinstance(s, ast.FunctionDef) for s in body):
        return "function"
    if body and all(_is_visprog_step(s) for s in body):
        return "visprog"
    if body and all(_is_vpeval_stmt(s) for s in body) and any(
            _call_name(getattr(s, "value", None)) in VPEVAL_MODULES for s in body):
        return "vpeval"
    return "script"


def _call_name(node) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id
    return None


def _is_visprog_step(s: ast.stmt) -> bool:
    if not (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)):
        return False
    name = _call_name(s.value)
    return bool(name) and name.isupper() and not s.value.args


def _is_vpeval_stmt(s: ast.stmt) -> bool:
    return isinstance(s, (ast.Expr, ast.Assign)) and _call_name(getattr(s, "value", None)) is not None


def _function_inputs(fn: ast.FunctionDef) -> list[InputSpec]:
    a = fn.args
    params = list(a.posonlyargs) + list(a.args)
    defaults = [None] * (len(params) - len(a.defaults)) + list(a.defaults)
    out = []
    for p, d in zip(params, defaults):
        ann = ast.unparse(p.annotation) if p.annotation is not None else ""
        default = d.value if isinstance(d, ast.Constant) else None
        out.append(InputSpec(p.arg, ann, required=d is None, default=default))
    for p, d in zip(a.kwonlyargs, a.kw_defaults):
        ann = ast.unparse(p.annotation) if p.annotation is not None else ""
        out.append(InputSpec(p.arg, ann, required=d is None, default=d.value if isinstance(d, ast.Constant) else None))
    return out


# --- VisProg's EVAL expressions ----------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def translate_eval(expr: str, max_nesting: int = Limits.max_nesting) -> tuple[ast.Expression | None, str, str | None]:
    """Turn a VisProg EVAL string such as ``"'yes' if {ANSWER0} > 0 else 'no'"`` into an expression tree.

    ``{NAME}`` placeholders become variable reads and VisProg's ``xor`` becomes ``!=`` (VisProg's own
    rule).  Returns (tree or None, translated text, error message or None).  Never uses eval().
    """
    text = _PLACEHOLDER.sub(lambda m: m.group(1), expr)
    text = re.sub(r"\bxor\b", "!=", text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        return None, text, f"EVAL expression is not valid: {exc.msg}"
    except (RecursionError, MemoryError):
        return None, text, "EVAL expression nests too deeply to parse"
    if node_depth(tree, max_nesting) > max_nesting:  # the program's own nesting limit applies inside the string
        return None, text, f"EVAL expression nests deeper than {max_nesting} levels (limit max_nesting)"
    return tree, text, None
