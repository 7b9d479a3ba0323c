"""The trace for a terminal (rich) and for a planner (a compact plain-text observation)."""

from __future__ import annotations

from .record import StepError, StepRecord, Trace

ARG_CHARS = 60       # per argument summary in the observation
OUTPUT_CHARS = 160   # per output summary in the observation


def _clip(text: str, n: int) -> str:
    text = " ".join(str(text).split())  # one line
    return text if len(text) <= n else text[: max(0, n - 1)] + "…"


def describe_input(desc) -> str:
    """A one-line description of a run input from its JSON form (``image.png 640x480`` for images)."""
    from ..values.codec import summarize

    if isinstance(desc, dict) and desc.get("type") == "Image":
        size = desc.get("size") or ["?", "?"]
        source = str(desc.get("source") or "image").replace("\\", "/").rsplit("/", 1)[-1]
        crop = " (crop)" if desc.get("root_size") and list(desc["root_size"]) != list(size) else ""
        return f"{source} {size[0]}x{size[1]}{crop}"
    return summarize(desc)


def _where(err: StepError) -> str:
    if err.line is None:
        return ""
    return f"line {err.line}:{(err.col or 0) + 1}" if err.col is not None else f"line {err.line}"


def format_error(err: StepError, message_chars: int = 300) -> str:
    """``ToolError at line 4:10: message (hint: ...)`` on one line."""
    where = _where(err)
    text = f"{err.type}{' at ' + where if where else ''}: {_clip(err.message, message_chars)}"
    if err.hint:
        text += f" (hint: {_clip(err.hint, 200)})"
    return text


def _located(s: StepRecord) -> StepError:
    """The step's error, with the step's own line:col when the error did not say where."""
    err = s.error
    if err is not None and err.line is None and s.line is not None:
        return err.model_copy(update={"line": s.line, "col": s.col})
    return err


def _call_text(s: StepRecord) -> str:
    args = ", ".join(f"{k}={_clip(v, ARG_CHARS)}" for k, v in s.args.items())
    name = s.call or s.tool or "?"
    target = f"{s.target}=" if s.target else ""
    return f"{target}{name}({args})"


def step_line(s: StepRecord) -> str:
    """One observation line for a step: ``step 3 line 2 BOX0=LOC(...) -> 2 detections: ...``."""
    head = f"step {s.id}" + (f" line {s.line}" if s.line is not None else "")
    call = _clip(_call_text(s), 240)
    if s.error is not None:
        return f"{head} {call} -> ERROR {format_error(_located(s))}"
    return f"{head} {call} -> {_clip(s.output if s.output is not None else 'None', OUTPUT_CHARS)}"


def _final_line(trace: Trace) -> str:
    if trace.error is not None:
        for s in trace.steps:
            e = s.error
            if e is not None and (e.type, e.message, e.line) == (trace.error.type, trace.error.message, trace.error.line):
                return f"run failed at step {s.id}: {format_error(trace.error, 120)}"
        return f"run failed: {format_error(trace.error)}"
    summary = trace.result_summary if trace.result_summary is not None else repr(trace.result)
    return f"result: {_clip(summary, 300)}"


def observation(trace: Trace, max_chars: int = 2000) -> str:
    """A compact plain-text account of a run for an LLM planner, at most ``max_chars`` characters.

    One line per step (id, source line, call with argument summaries, output summary or error with
    line:col and hint), then the result or the run's error.  When too long, steps without errors
    are dropped from the middle (the first and last ones are kept longest) and replaced by a line
    saying how many were omitted; error lines and the final line are kept.
    """
    entries = [(step_line(s), s.error is not None) for s in trace.steps]
    final = _final_line(trace)
    full = "\n".join([e for e, _ in entries] + [final])
    if len(full) <= max_chars:
        return full

    keep = {i for i, (_, is_err) in enumerate(entries) if is_err}
    marker_room = 40  # for "… N steps omitted" lines
    used = sum(len(entries[i][0]) + 1 for i in keep) + len(final) + marker_room
    plain = [i for i, (_, is_err) in enumerate(entries) if not is_err]
    order = []
    lo, hi = 0, len(plain) - 1
    while lo <= hi:  # alternate: first, last, second, second-to-last, ...
        order.append(plain[lo])
        if lo != hi:
            order.append(plain[hi])
        lo, hi = lo + 1, hi - 1
    for i in order:
        cost = len(entries[i][0]) + 1
        if used + cost > max_chars:
            continue
        keep.add(i)
        used += cost

    lines: list[str] = []
    skipped = 0
    for i, (text, _) in enumerate(entries):
        if i in keep:
            if skipped:
                lines.append(f"… {skipped} step{'s' if skipped > 1 else ''} omitted")
                skipped = 0
            lines.append(text)
        else:
            skipped += 1
    if skipped:
        lines.append(f"… {skipped} step{'s' if skipped > 1 else ''} omitted")
    lines.append(final)
    text = "\n".join(lines)
    if len(text) <= max_chars:
        return text
    # still too long (many or huge errors): shorten every line evenly, keep the final line whole if possible
    budget = max(1, (max_chars - len(final) - len(lines)) // max(1, len(lines) - 1))
    text = "\n".join([_clip(x, budget) for x in lines[:-1]] + [final])
    return text if len(text) <= max_chars else _clip(text.replace("\n", " | "), max_chars)


def render_rich(trace: Trace):
    """A rich renderable of a run: a table of steps (errors in red) and the result or error."""
    from rich import box
    from rich.console import Group
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    title = Text(trace.name or "vistrace run", style="bold")
    title.append(f"  {len(trace.steps)} steps, {trace.duration_s:.2f} s", style="dim")
    table = Table(box=box.SIMPLE_HEAVY, show_lines=False, expand=False, title=title, title_justify="left")
    table.add_column("step", justify="right", no_wrap=True)
    table.add_column("line", justify="right", no_wrap=True)
    table.add_column("call", overflow="fold")
    table.add_column("backend", overflow="fold")
    table.add_column("output", overflow="fold", ratio=1)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("cache", no_wrap=True)
    for s in trace.steps:
        call = Text(f"{s.target} = " if s.target else "", style="dim")
        call.append(s.call or s.tool or "?", style="bold")
        if s.tool and s.tool != s.call:
            call.append(f" ({s.tool})", style="dim")
        backend = Text(s.backend or "", style="cyan")
        if s.model:
            backend.append(f" {s.model}", style="dim")
        if s.error is not None:
            output = Text(format_error(_located(s)), style="bold red")
        else:
            output = Text(_clip(s.output if s.output is not None else "None", 300))
        table.add_row(Text(str(s.id)), Text("" if s.line is None else str(s.line)), call, backend, output,
                      Text(f"{s.duration_s * 1000:.0f} ms" if s.duration_s < 1 else f"{s.duration_s:.2f} s"),
                      Text("hit", style="green") if s.cache_hit else Text(""),
                      style="red" if s.error is not None else None)
    if trace.error is not None:
        end = Panel(Text(format_error(trace.error, 1000), style="bold red"), title="error", border_style="red",
                    title_align="left")
    else:
        summary = trace.result_summary if trace.result_summary is not None else repr(trace.result)
        end = Panel(Text(summary), title="result", border_style="green", title_align="left")
    return Group(table, end)
