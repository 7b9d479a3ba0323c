"""The agent as a LangGraph graph: plan -> check -> run -> (repair -> plan)* -> answer | fail.

State (what the checkpointer persists, plain JSON-like data only): the question, the session's images
(name -> file), the history of finished turns, this turn's attempts and its outcome.  The live
things (the LLM, the registry, the image values, the Run objects) travel in :class:`AgentContext`,
LangGraph's run context, which is never persisted.

Each node does one thing and never lets bad model output escape as an exception:

- **plan**: render :func:`~vistrace.agent.prompt.planner_messages`, call the LLM (with the registry's
  GBNF grammar when the model supports it, else a JSON schema, else plain text), extract the program.
  An output without a program (empty, prose, cut off, not UTF-8) becomes problems for the next
  attempt.  An LLM that cannot be called at all (missing weights, server down) ends the turn.
- **check**: the sandbox's static check on the registry, plus the agent's own: every free name must
  be an input, and the program must produce ``result``.
- **run**: ``vistrace.run``; a runtime error (with its line, step and tool) becomes problems.
- **repair**: announces the next attempt; **answer** cites the steps the value rests on;
  **fail** keeps every attempt.
"""

from __future__ import annotations

import ast
import json
import operator
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Callable, TypedDict

from .events import CheckProblems, LLMToken, PlanStarted, ProgramReady, RepairStarted, RuntimeFailed, StepDone
from .extract import MAX_REPLY_CHARS

NODES = ("plan", "check", "run", "repair", "answer", "fail")
PROGRAM_SCHEMA = {
    "type": "object",
    "properties": {"program": {"type": "string",
                               "description": "the whole program: one statement per line, the last `result = ...`"}},
    "required": ["program"],
    "additionalProperties": False,
}
STEP_FIELDS = {"id", "line", "source", "target", "call", "tool", "backend", "model", "output", "duration_s",
               "cache_hit", "error"}


def merge_images(old: dict | None, new: dict | None) -> dict:
    return {**(old or {}), **(new or {})}


class AgentState(TypedDict, total=False):
    question: str
    turn: int
    max_attempts: int
    images: Annotated[dict[str, str], merge_images]   # input name -> image file (or a description)
    history: Annotated[list[dict], operator.add]       # finished turns of the session
    attempts: list[dict]                               # this turn's attempts (see result.Attempt)
    outcome: dict | None                               # {"status": "answered"|"failed", ...}


@dataclass
class AgentContext:
    """What the nodes need that is not persisted: the model, the tools, the image values, the runs."""

    llm: Any
    registry: Any
    values: dict[str, Any]
    grammar: bool | str = True   # see constraint_mode
    max_tokens: int = 512
    stream_tokens: bool = False
    cache: Any = True
    limits: Any = None
    isolate: Any = True          # run programs in an isolated worker process (an Isolation, True, or False)
    save_dir: Callable[[dict], Path | None] | None = None   # turn state -> where to save the run folder
    max_reply_chars: int = MAX_REPLY_CHARS                  # cap on one answer of the model (see extract)
    runs: dict[int, Any] = field(default_factory=dict)      # attempt number -> Run (this process only)
    grammars: dict[tuple, str] = field(default_factory=dict)
    tool_tables: dict[tuple, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ helpers
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _replace_last(attempts: list[dict], **changes: Any) -> list[dict]:
    last = {**attempts[-1], **changes}
    return attempts[:-1] + [last]


def input_types(values: dict[str, Any]) -> dict[str, str]:
    return {name: getattr(v, "type_name", type(v).__name__) for name, v in values.items()}


DECODINGS = ("auto", "typed", "program", "plain")


def constraint_mode(llm: Any, grammar: bool | str) -> str:
    """How the planner's output is constrained: ``typed`` (a GBNF grammar per statement, typed by the
    variables so far; needs a client that continues a prefix), ``grammar`` (one GBNF grammar for the
    whole program), ``json_schema`` or ``plain``.

    ``grammar``: True or ``auto`` (the strongest the model supports), ``typed``, ``program`` (the
    whole-program grammar even where typed decoding is possible), False or ``plain`` (none)."""
    if grammar is False or grammar == "plain":
        return "plain"
    if grammar not in (True, "auto", "typed", "program"):
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {grammar!r}")
    if getattr(llm, "supports_grammar", False):
        if grammar != "program" and getattr(llm, "supports_prefill", False):
            return "typed"
        return "grammar"
    if getattr(llm, "supports_json_schema", False):
        return "json_schema"
    return "plain"


def callable_tools(ctx: AgentContext):
    """The tools this turn's programs may call: those offered to the planner (the same list the prompt
    and the grammar are made from), as the check's tool table."""
    from .toolset import offered_tools

    types = input_types(ctx.values)
    key = (id(ctx.registry), tuple(sorted(types.items())))
    if key not in ctx.tool_tables:
        ctx.tool_tables[key] = offered_tools(ctx.registry, types)
    return ctx.tool_tables[key]


def _grammar_text(ctx: AgentContext) -> str:
    from .grammar import program_grammar
    from .toolset import planner_tools

    types = input_types(ctx.values)
    key = (id(ctx.registry), tuple(sorted(types.items())))
    if key not in ctx.grammars:
        tools = planner_tools(ctx.registry, types)
        ctx.grammars[key] = program_grammar(ctx.registry, list(types), tools=tools)
    return ctx.grammars[key]


def _plan_typed(ctx: AgentContext, messages: list, kwargs: dict, emit_piece: Callable[[str], None],
                avoid: list[str], failed_members: list[str]) -> tuple[str, str]:
    from .stepwise import plan_statements
    from .toolset import planner_tools

    types = input_types(ctx.values)
    out = plan_statements(ctx.llm, messages, ctx.registry, planner_tools(ctx.registry, types), types,
                          max_tokens=kwargs["max_tokens"], temperature=kwargs["temperature"], avoid=avoid,
                          exclude_members=failed_members,
                          on_statement=emit_piece if ctx.stream_tokens else None, max_chars=ctx.max_reply_chars)
    return _as_text(out.text), out.finish_reason


def _read_stream(pieces: Any, max_chars: int, on_piece: Callable[[str], None]) -> tuple[str, str]:
    """The streamed answer, read no further than just past ``max_chars`` characters (the stream is closed
    there, so memory and time stay bounded; the extractor then refuses the answer as too long)."""
    got: list[str] = []
    size = 0
    finish = "stream"
    try:
        for piece in pieces:
            text = _as_text(piece)
            got.append(text)
            size += len(text)
            on_piece(text)
            if size > max_chars:
                finish = "too_long"
                break
    finally:
        close = getattr(pieces, "close", None)
        if finish == "too_long" and callable(close):
            close()
    return "".join(got), finish


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _as_text(piece: Any) -> str:
    if piece is None:   # a client that answered nothing at all
        return ""
    if isinstance(piece, (bytes, bytearray)):
        return bytes(piece).decode("utf-8", errors="replace")
    text = piece if isinstance(piece, str) else str(piece)
    return text.encode("utf-8", errors="replace").decode("utf-8")  # lone surrogates cannot be stored


def program_from_output(raw: str, mode: str, max_chars: int | None = None) -> str:
    """The program in a model's output; raises NoProgram when there is none (ReplyTooLong when the
    output is over ``max_chars``, checked before anything reads it), when the output stops in the middle
    of a statement, or when a statement (``name = ...``) had to be cut because it does not parse: the
    statements before it would run and answer something the model did not write."""
    from .extract import MAX_REPLY_CHARS, NoProgram, check_reply_size, ends_mid_statement, extract, syntax_message

    max_chars = MAX_REPLY_CHARS if max_chars is None else int(max_chars)
    check_reply_size(raw, max_chars)
    if mode == "json_schema":
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, RecursionError, ValueError):
            obj = None
        if isinstance(obj, dict):
            if not isinstance(obj.get("program"), str):
                raise NoProgram('the JSON answer has no text field "program"')
            raw = obj["program"]
    found = extract(raw, max_chars)
    program = found.program
    if not program.strip():
        raise NoProgram("the model's answer holds no program")
    # cut off whatever the finish reason says (a stream, a server that stops early): the program found
    # in it lost its end, and a completed guess (`result = b` for `result = crop(image, b`) answers another question
    cut = ends_mid_statement(raw, max_chars)
    if cut is not None and cut not in {line.strip() for line in program.splitlines()}:
        raise NoProgram(f"the answer stops in the middle of a statement: `{_clip(cut, 120)}`",
                        hint="write every statement whole; a shorter program if it was cut off")
    lost = found.lost_statement
    if lost is not None:   # a statement the extractor had to cut: without it the program computes something else
        raise NoProgram(f"the answer's line `{_clip(lost, 120)}` does not parse ({syntax_message(lost)})",
                        hint="write every statement whole and valid; the last one `result = ...`")
    return program


def _keeps_last_line(raw: str, program: str) -> bool:
    """Whether a cut-off answer's last line made it into the program (else the program lost its end)."""
    lines = [ln.strip() for ln in raw.splitlines() if ln.strip() and not ln.strip().startswith(("```", "~~~"))]
    return not lines or lines[-1] in program


# --------------------------------------------------------------------------------------- static check
def _first_use(tree: ast.AST, name: str) -> tuple[int, int]:
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id == name:
            return n.lineno, n.col_offset
    return 1, 0


def static_problems(program: str, registry: Any, input_names: list[str], limits: Any = None,
                    tools: Any = None) -> list[str]:
    """Every reason ``program`` cannot run on these inputs, each with line:col and a hint (empty = fine).

    ``tools``: the tool table the program may call (the agent passes the tools it offered the planner,
    :class:`~vistrace.agent.toolset.OfferedTools`); default: every tool of ``registry``."""
    from vistrace.errors import ProgramError
    from vistrace.sandbox import check, errors, parse
    from vistrace.sandbox.program import RESULT_NAMES

    try:
        prog = parse(program, limits=limits)
    except ProgramError as exc:
        return [str(p) for p in exc.problems] or [str(exc)]
    out = [str(p) for p in errors(check(prog, registry if tools is None else tools, limits))]
    given = ", ".join(input_names) or "none"
    if prog.style == "function":
        for spec in prog.inputs:
            if spec.required and spec.name not in input_names:
                out.append(f"line {prog.entry.lineno}:1: parameter '{spec.name}' is not an input "
                           f"(hint: the inputs are: {given})")
    else:
        for spec in prog.inputs:
            if spec.name in input_names or any(f"'{spec.name}'" in p for p in out):
                continue
            line, col = _first_use(prog.tree, spec.name)
            out.append(f"line {line}:{col + 1}: '{spec.name}' is read but never assigned and is not an input "
                       f"(hint: the inputs are: {given}; assign a variable before using it)")
    if prog.style == "script":
        body = [s for s in prog.tree.body if not isinstance(s, ast.FunctionDef)]
        assigned = {n.id for s in body for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        if not (set(RESULT_NAMES) & assigned) and not (body and isinstance(body[-1], ast.Expr)):
            last = body[-1].lineno if body else 1
            out.append(f"line {last}:1: the program never assigns `result` (hint: end with `result = ...`)")
    return out


REPAIR_TEMPERATURE = 0.7
KEPT_RAW_CHARS = 2000        # of an answer over the cap, what the attempt keeps
PREVIOUS_CHARS = 2000        # of the previous program (or answer without one) shown in a repair prompt


def _previous_answer(prev: dict | None) -> str | None:
    """What a repair prompt shows as the previous attempt: its program, else the model's answer, cut short."""
    if not prev:
        return None
    from .extract import clip_text

    text = prev.get("program") or prev.get("raw_output")
    return None if text is None else clip_text(text, PREVIOUS_CHARS)


# ------------------------------------------------------------------------------------------- nodes
def plan(state: AgentState, runtime) -> dict:
    from vistrace.agent.llm.base import LLMError

    from .extract import NoProgram, clip_text
    from .prompt import PlanRequest, planner_messages

    ctx: AgentContext = runtime.context
    emit = runtime.stream_writer
    attempts = list(state.get("attempts") or [])
    n = len(attempts) + 1
    prev = attempts[-1] if attempts else None
    mode = constraint_mode(ctx.llm, ctx.grammar)
    note = ""
    # Greedy for the first plan; a repair samples (seeded, so still reproducible): at temperature 0 a small
    # model mostly repeats the program it was asked to fix (measured with the 0.5B model: 0 of 9 repairs
    # fixed greedily, 2 of 9 at 0.8).
    kwargs: dict[str, Any] = {"max_tokens": ctx.max_tokens, "temperature": 0.0 if n == 1 else REPAIR_TEMPERATURE}
    if mode == "grammar":
        try:
            kwargs["grammar"] = _grammar_text(ctx)
        except Exception as exc:  # noqa: BLE001 - no grammar for this registry: plain text, said in the attempt
            mode, note = "plain", f"no grammar: {type(exc).__name__}: {exc}"
    elif mode == "json_schema":
        kwargs["json_schema"] = PROGRAM_SCHEMA
    emit(PlanStarted(n, mode=mode, repair=prev is not None, model=str(getattr(ctx.llm, "name", ""))))
    history = tuple((t["question"], t.get("answer") or "") for t in state.get("history") or [] if t.get("ok"))
    # No image notes (size, file name): the 0.5B model copies them into the program as constants
    # (`image_path = '000000039769.png'`, `I640 = 640`), which answers nothing; programs read image.width.
    req = PlanRequest(question=state["question"], inputs=input_types(ctx.values), history=history,
                      previous_program=_previous_answer(prev), problems=tuple(prev.get("problems") or ()) if prev else ())
    attempt: dict[str, Any] = {"number": n, "mode": mode, "raw_output": "", "program": None, "stage": "planned",
                               "problems": [], "error": None, "finish_reason": "", "note": note}
    t0 = time.perf_counter()
    messages = planner_messages(req, ctx.registry)
    try:
        if mode == "typed":
            avoid = [line for a in attempts for line in a.get("failed_lines") or ()]
            failed = sorted({m for a in attempts for m in a.get("failed_members") or ()})
            raw, finish = _plan_typed(ctx, messages, kwargs, lambda text: emit(LLMToken(n, text=text)), avoid, failed)
        elif ctx.stream_tokens:
            raw, finish = _read_stream(ctx.llm.stream(messages, **kwargs), ctx.max_reply_chars,
                                       lambda text: emit(LLMToken(n, text=text)))
        else:
            done = ctx.llm.complete(messages, **kwargs)
            raw, finish = _as_text(getattr(done, "text", done)), str(getattr(done, "finish_reason", "") or "")
    except NoProgram as exc:
        raw, finish = "", "error"
        attempt.update(stage="extract", problems=[f"the model's answer held no program: {exc.message}"])
    except LLMError as exc:  # the model cannot be used: repairing will not help
        attempt.update(stage="llm", error=exc.to_json(), problems=[str(exc)], seconds=time.perf_counter() - t0)
        return {"attempts": attempts + [attempt]}
    except Exception as exc:  # noqa: BLE001 - e.g. undecodable bytes inside the client: a bad output
        raw, finish = "", "error"
        attempt.update(stage="extract", problems=[f"the model's output could not be read: {type(exc).__name__}: {exc}"])
    # an answer over the cap is kept only in part: the state (and a session's database) stays bounded
    kept = raw if len(raw) <= ctx.max_reply_chars else clip_text(raw, KEPT_RAW_CHARS)
    attempt.update(raw_output=kept, finish_reason=finish, seconds=time.perf_counter() - t0)
    if attempt["stage"] == "planned":
        try:
            program = program_from_output(raw, mode, ctx.max_reply_chars)
            if finish == "length" and not _keeps_last_line(raw, program):
                raise NoProgram("the answer was cut off in the middle of the program")
            attempt["program"] = program
        except NoProgram as exc:
            hint = exc.hint or "reply with only the program, one statement per line, the last one `result = ...`"
            problems = [f"the answer held no program: {exc.message} (hint: {hint})"]
            if not raw.strip():
                problems = ["the answer was empty (hint: reply with the program, the last line `result = ...`)"]
            if finish == "length":
                problems.append(f"the answer was cut off at {ctx.max_tokens} tokens (hint: write a shorter program)")
            attempt.update(stage="extract", problems=problems)
    if attempt["program"] is not None:
        emit(ProgramReady(n, program=attempt["program"]))
    else:
        emit(CheckProblems(n, problems=tuple(attempt["problems"]), stage="extract"))
    return {"attempts": attempts + [attempt]}


def check(state: AgentState, runtime) -> dict:
    ctx: AgentContext = runtime.context
    attempts = list(state["attempts"])
    a = attempts[-1]
    problems = static_problems(a["program"], ctx.registry, list(ctx.values), ctx.limits, tools=callable_tools(ctx))
    if problems:
        if a.get("finish_reason") == "length":
            problems.append(f"the answer was cut off at {ctx.max_tokens} tokens (hint: write a shorter program)")
        same = [p["number"] for p in attempts[:-1] if p.get("program") == a["program"]]
        if same:
            problems.append(f"this is the same program as attempt {same[-1]} (hint: change what the problems name)")
        runtime.stream_writer(CheckProblems(a["number"], problems=tuple(problems), stage="check"))
        return {"attempts": _replace_last(attempts, stage="check", problems=problems,
                                          failed_lines=_lines_named(a["program"], problems))}
    return {"attempts": _replace_last(attempts, stage="checked", problems=[])}


def _lines_named(program: str, problems: list[str]) -> list[str]:
    """The program's statements that problems point at (``line N:...``): a repair should not write them again."""
    lines = program.splitlines()
    out = []
    for p in problems:
        m = re.match(r"(?:runtime error at )?line (\d+)", p)
        if m and 0 < int(m.group(1)) <= len(lines) and lines[int(m.group(1)) - 1].strip() not in out:
            out.append(lines[int(m.group(1)) - 1].strip())
    return out


def _failed_members(problem: str) -> list[str]:
    """The method or field the failing expression ended in (``dets.best()`` on no detections -> ``best``)."""
    m = re.search(r" in `([^`\n]+)`", problem.split("\n", 1)[0])   # the error's own line, not the steps before
    if not m:
        return []
    try:
        node = ast.parse(m.group(1).strip(), mode="eval").body
    except SyntaxError:
        return []
    node = node.func if isinstance(node, ast.Call) else node
    return [node.attr] if isinstance(node, ast.Attribute) else []


def _execute(ctx: AgentContext, program: str, turn: int, n: int, on_step: Callable[[Any], None] | None = None):
    from vistrace.api import run as run_program

    return run_program(program, registry=ctx.registry, limits=ctx.limits, cache=ctx.cache,
                       name=f"turn{turn}-attempt{n}", on_step=on_step, isolate=ctx.isolate, **ctx.values)


def runtime_problem(run: Any) -> str:
    """The runtime error for the planner: where (line:col, step, tool), what, the statement, the steps before.

    The error's message and the steps' outputs are quoted as untrusted data
    (:func:`~vistrace.agent.prompt.as_data`): they hold what tools computed from the images (OCR text,
    captions, answers) and, through a message, values of the program — never instructions."""
    from .prompt import DATA_LABEL, as_data

    err = run.error
    brief = getattr(err, "brief", None)  # a refusal without set-up advice for unconfigured backends
    message = brief or getattr(err, "message", None) or str(err)
    hint = None if brief else getattr(err, "hint", None)
    where = str(getattr(err, "where", "") or "")
    what = as_data(message, 600) + (f" (hint: {hint})" if hint else "")
    text = f"runtime error at {where}: {what}" if where else f"runtime error: {what}"
    failing = next((s for s in run.trace.steps if s.error is not None), None)
    if failing is not None and failing.source:
        text += f"\n  in: {failing.source.strip()}"
    done = [s for s in run.trace.steps if s.error is None][-5:]
    if done:
        text += f"\n  steps before it (outputs quoted as {DATA_LABEL}):\n" + \
            "\n".join("  " + _observed_step(s) for s in done)
    return text


def _observed_step(s: Any) -> str:
    """One finished step for the planner: ``step 1 line 1 ocr in `t = ocr(image)` -> "3 lines: ..."`` — the
    statement as the program wrote it and the output quoted as data.  Not the argument summaries: they
    may hold data too, and a small model copies ``image="photo.png 640x480"`` into its next program."""
    from .prompt import as_data

    head = f"step {s.id}" + (f" line {s.line}" if s.line is not None else "")
    name = s.tool or s.call or "?"
    source = " ".join((s.source or "").split())
    where = f" in `{source[:159] + '…' if len(source) > 160 else source}`" if source else ""
    output = as_data(s.output if s.output is not None else "None", 200)
    return f"{head} {name}{where} -> {output}"


def run(state: AgentState, runtime) -> dict:
    from vistrace.errors import InputError, ProgramError

    ctx: AgentContext = runtime.context
    emit = runtime.stream_writer
    attempts = list(state["attempts"])
    a = attempts[-1]
    n = a["number"]
    def step_done(rec) -> None:   # live: each step as it finishes, while the program still runs
        emit(StepDone(n, step=rec.model_dump(include=STEP_FIELDS, mode="json")))

    try:
        result = _execute(ctx, a["program"], state.get("turn", 1), n, on_step=step_done)
    except (ProgramError, InputError) as exc:
        problems = [str(p) for p in getattr(exc, "problems", None) or []] or [str(exc)]
        emit(RuntimeFailed(n, error=exc.to_json(), problems=tuple(problems)))
        return {"attempts": _replace_last(attempts, stage="run", error=exc.to_json(), problems=problems)}
    ctx.runs[n] = result
    if result.error is not None:
        error = result.error.to_json()
        problems = [runtime_problem(result)]
        emit(RuntimeFailed(n, error=error, problems=tuple(problems)))
        failing = [st.source.strip() for st in result.trace.steps if st.error is not None and st.source]
        return {"attempts": _replace_last(attempts, stage="run", error=error, problems=problems,
                                          failed_lines=_lines_named(a["program"], problems) or failing[:1],
                                          failed_members=_failed_members(problems[0]))}
    return {"attempts": _replace_last(attempts, stage="ran")}


def repair(state: AgentState, runtime) -> dict:
    a = state["attempts"][-1]
    runtime.stream_writer(RepairStarted(a["number"] + 1, problems=tuple(a.get("problems") or ())))
    return {"outcome": None}


def _save(ctx: AgentContext, state: AgentState, result: Any) -> str | None:
    if ctx.save_dir is None or result is None:
        return None
    where = ctx.save_dir(dict(state))
    return str(result.save(where)) if where is not None else None


def answer(state: AgentState, runtime) -> dict:
    from .evidence import cited_steps

    ctx: AgentContext = runtime.context
    attempts = list(state["attempts"])
    a = attempts[-1]
    n = a["number"]
    result = ctx.runs.get(n)
    if result is None:  # resumed in a new process after the run: run the checked program again
        result = ctx.runs[n] = _execute(ctx, a["program"], state.get("turn", 1), n)
    cites = list(cited_steps(result)) if result.error is None else []
    run_dir = _save(ctx, state, result)
    ok = result.error is None
    text = result.describe()
    entry = {"turn": state.get("turn", 1), "question": state["question"], "ok": ok, "answer": text if ok else None,
             "error": None if ok else str(result.error), "program": a["program"], "run_dir": run_dir,
             "cited_steps": cites, "attempts": n, "at": _now()}
    outcome = {"status": "answered" if ok else "failed", "attempt": n, "cited_steps": cites, "run_dir": run_dir,
               "answer": text if ok else None, "message": None if ok else f"the rerun failed: {result.error}"}
    attempts = _replace_last(attempts, stage="answered" if ok else "run")
    return {"attempts": attempts, "history": [entry], "outcome": outcome}


def failure_message(attempts: list[dict]) -> str:
    if not attempts:
        return "no attempt was made"
    last = attempts[-1]
    if last.get("stage") == "llm":
        return f"the model could not be used: {(last.get('problems') or ['?'])[0]}"
    what = {"extract": "answer held no program", "check": "program was rejected by check",
            "run": "program failed while running"}
    first = (last.get("problems") or [""])[0].splitlines()[0] if last.get("problems") else ""
    return (f"no answer after {len(attempts)} attempt{'s' if len(attempts) != 1 else ''}: the last "
            f"{what.get(last.get('stage'), 'attempt failed')}" + (f" — {first}" if first else ""))


def fail(state: AgentState, runtime) -> dict:
    ctx: AgentContext = runtime.context
    attempts = list(state.get("attempts") or [])
    last_run = ctx.runs.get(attempts[-1]["number"]) if attempts else None
    run_dir = _save(ctx, state, last_run)
    message = failure_message(attempts)
    entry = {"turn": state.get("turn", 1), "question": state["question"], "ok": False, "answer": None,
             "error": message, "program": next((a["program"] for a in reversed(attempts) if a.get("program")), None),
             "run_dir": run_dir, "cited_steps": [], "attempts": len(attempts), "at": _now()}
    return {"history": [entry], "outcome": {"status": "failed", "message": message, "run_dir": run_dir}}


# ------------------------------------------------------------------------------------------ routing
def _route(ok_stage: str, next_node: str):
    def route(state: AgentState) -> str:
        attempts = state.get("attempts") or []
        a = attempts[-1]
        if a.get("stage") == ok_stage:
            return next_node
        if a.get("stage") == "llm" or len(attempts) >= int(state.get("max_attempts") or 4):
            return "fail"
        return "repair"

    route.__name__ = f"after_{ok_stage}"
    return route


def build_graph(checkpointer: Any = None):
    """The compiled agent graph (with ``checkpointer`` when given: a session)."""
    from langgraph.graph import END, START, StateGraph

    g = StateGraph(AgentState, context_schema=AgentContext)
    for name, fn in (("plan", plan), ("check", check), ("run", run), ("repair", repair), ("answer", answer),
                     ("fail", fail)):
        g.add_node(name, fn)
    g.add_edge(START, "plan")
    g.add_conditional_edges("plan", _route("planned", "check"), ["check", "repair", "fail"])
    g.add_conditional_edges("check", _route("checked", "run"), ["run", "repair", "fail"])
    g.add_conditional_edges("run", _route("ran", "answer"), ["answer", "repair", "fail"])
    g.add_edge("repair", "plan")
    g.add_edge("answer", END)
    g.add_edge("fail", END)
    return g.compile(checkpointer=checkpointer)


def turn_input(question: str, turn: int, max_attempts: int, images: dict[str, str] | None = None,
               history: list[dict] | None = None) -> AgentState:
    """The input that starts a turn: it resets this turn's attempts and outcome."""
    out: AgentState = {"question": question, "turn": turn, "max_attempts": max_attempts, "attempts": [],
                       "outcome": None, "images": dict(images or {})}
    if history:
        out["history"] = list(history)
    return out
