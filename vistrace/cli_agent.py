"""The agent's commands: ``vistrace ask``, ``vistrace chat`` and ``vistrace sessions``.

Registered on the main app by :func:`register`; everything heavy (the agent, LangGraph, the model)
is imported inside the commands, so ``vistrace --help`` stays instant.

Exit codes (as for ``vistrace run``): 0 answered; 1 the program failed while running, or the model
could not be used; 2 no program passed ``check`` (or no program at all), or a bad input.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from .cli_common import EXIT_OK, EXIT_REJECTED, EXIT_RUNTIME, _console, _fail  # noqa: F401
CHAT_HELP = ("/image PATH (or NAME=PATH)  add an image    /images  list them    /program  the last program\n"
             "/trace  the last trace    /save [DIR]  save the last run folder    /history    /resume  finish an "
             "interrupted turn    /exit")


def _split_image(text: str) -> tuple[str | None, str]:
    if "=" in text:
        name, path = text.split("=", 1)
        if name.isidentifier():
            return name, path
    return None, text


def parse_images(items: list[str]) -> dict[str, str]:
    """``PATH`` or ``NAME=PATH`` items -> input name -> path (unnamed ones: image, image2, ...)."""
    from vistrace.agent.agent import image_names
    from vistrace.errors import InputError

    out: dict[str, str] = {}
    unnamed = iter(image_names(len(items) + 8))
    for item in items:
        name, path = _split_image(item)
        if name is None:
            name = next(n for n in unnamed if n not in out)
        if not Path(path).is_file():
            raise InputError(f"image file not found: {path}", hint="give the path of a PNG/JPEG/... file")
        out[name] = path
    return out


EXPERTS_HELP = "run the expert tools on this `vistrace serve` host (token: $VISTRACE_EXPERTS_TOKEN)"
REPLY_HELP = "the longest answer of the model that is read, in characters (longer ones are refused and repaired)"
ISOLATE_HELP = ("run the model's programs in a worker process with OS limits (memory, CPU, files, empty "
                "environment, scratch directory; default on); --no-isolate runs them in this process")


def _experts_registry(url: str | None):
    """The registry for ``--experts URL`` (expert tools answered by that server), or None for local."""
    if not url:
        return None
    from vistrace.serve import remote_registry

    return remote_registry(url)


def _exit_code(error) -> int:
    return EXIT_REJECTED if getattr(error, "stage", "run") in ("check", "extract") else EXIT_RUNTIME


def _print_attempts(attempts, console) -> None:
    for a in attempts:
        first = (a.problems[0].splitlines()[0] if a.problems else "") if a.stage != "answered" else "ok"
        console.print(f"  attempt {a.number} ({a.mode}): {a.stage} — {first}", markup=False)


DECODING_HELP = ("auto (the strongest the model supports) | typed (one grammar per statement, typed by the "
                 "variables so far; local models) | program (one grammar for the whole program) | plain")


def _decoding(decoding: str, no_grammar: bool) -> str:
    from vistrace.agent.graph import DECODINGS
    from vistrace.errors import InputError

    if decoding not in DECODINGS:
        raise InputError(f"--decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
    return "plain" if no_grammar else decoding


def ask(
    args: list[str] = typer.Argument(..., help="IMAGE... QUESTION: image files (PATH or NAME=PATH), then the question"),
    llm: Optional[str] = typer.Option(None, "--llm", help="local | local:qwen-1.5b | local:PATH.gguf | "
                                                          "openai:URL#MODEL (default $VISTRACE_LLM, else local)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default runs/<timestamp>-ask/)"),
    no_grammar: bool = typer.Option(False, "--no-grammar", help="do not constrain decoding (same as --decoding plain)"),
    decoding: str = typer.Option("auto", "--decoding", help=DECODING_HELP),
    max_repairs: int = typer.Option(3, "--max-repairs", min=0, max=20, help="repair attempts after the first plan"),
    max_reply_chars: int = typer.Option(32_000, "--max-reply-chars", min=1, help=REPLY_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the answer (or the failure) as JSON"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not use the result cache"),
    experts: Optional[str] = typer.Option(None, "--experts", envvar="VISTRACE_EXPERTS", help=EXPERTS_HELP),
    isolate: bool = typer.Option(True, "--isolate/--no-isolate", help=ISOLATE_HELP),
) -> None:
    """Answer a question about images: plan a program, check it, run it, repair it; print the answer,
    the program and where the report is."""
    from vistrace.agent.agent import Agent
    from vistrace.agent.result import AgentFailed
    from vistrace.api import default_run_dir
    from vistrace.errors import InputError, VistraceError
    from vistrace.values.image import IMAGE_SUFFIXES

    question = args[-1]
    if Path(question).suffix.lower() in IMAGE_SUFFIXES and Path(question).is_file():
        _fail(f"the last argument must be the question, got the image {question}", EXIT_REJECTED,
              hint='vistrace ask IMAGE... "question"')
    try:
        images = parse_images(args[:-1])
        agent = Agent(llm=llm, registry=_experts_registry(experts), max_repairs=max_repairs,
                      grammar=_decoding(decoding, no_grammar), cache=not no_cache, isolate=isolate,
                      max_reply_chars=max_reply_chars)
        answer = agent.ask(images, question)
    except AgentFailed as exc:
        run_dir = exc.run.save(out or default_run_dir("ask")) if exc.run is not None else None
        if as_json:
            payload = exc.to_json()
            payload["run_dir"] = str(run_dir) if run_dir else None
            sys.stdout.write(json.dumps({"ok": False, **payload}, indent=2, default=str) + "\n")
        else:
            err = _console(stderr=True)
            err.print(f"[bold red]no answer:[/] {exc.message}", markup=True)
            _print_attempts(exc.attempts, err)
            if run_dir:
                err.print(f"[dim]last run folder: {run_dir} (report.html)[/]", markup=True)
        raise typer.Exit(_exit_code(exc))
    except InputError as exc:
        _fail(str(exc), EXIT_REJECTED)
        return
    except VistraceError as exc:
        _fail(str(exc), EXIT_RUNTIME)
        return
    run_dir = answer.run.save(out or default_run_dir("ask"))
    answer.run_dir = run_dir
    if as_json:
        sys.stdout.write(json.dumps({"ok": True, **answer.to_json()}, indent=2, default=str) + "\n")
        return
    console = _console()
    console.print(f"[bold green]answer:[/] {answer.text}", markup=True)
    for line in answer.citations:
        console.print(f"  [dim]rests on[/] {line}", markup=True)
    console.print("[bold]program:[/]", markup=True)
    for line in answer.program.strip().splitlines():
        console.print(f"  {line}", markup=False)
    repairs = len(answer.attempts) - 1
    console.print(f"[dim]attempts: {len(answer.attempts)}" + (f" ({repairs} repaired)" if repairs else "") + "[/]",
                  markup=True)
    console.print(f"[dim]run folder: {run_dir} (report.html)[/]", markup=True)


class ChatPrinter:
    """Prints a turn's events as they come: plan tokens dimmed, problems, steps, the answer."""

    def __init__(self, console):
        self.console = console
        self.in_tokens = False

    def _end_tokens(self) -> None:
        if self.in_tokens:
            self.console.print()
            self.in_tokens = False

    def __call__(self, ev) -> None:
        c = self.console
        kind = ev.kind
        if kind == "llm_token":
            c.print(ev.text, end="", style="dim", markup=False, highlight=False)
            self.in_tokens = True
            return
        self._end_tokens()
        if kind == "plan_started":
            what = "repairing" if ev.repair else "planning"
            c.print(f"[cyan]{what}[/] (attempt {ev.attempt}, {ev.mode}, {ev.model})", markup=True)
        elif kind == "check_problems":
            c.print(f"[yellow]{'no program' if ev.stage == 'extract' else 'check'}:[/]", markup=True)
            for p in ev.problems:
                c.print(f"  {p}", markup=False)
        elif kind == "step":
            c.print(f"  {ev.line_text}", markup=False)
        elif kind == "runtime_error":
            c.print("[red]runtime error:[/]", markup=True)
            for p in ev.problems:
                c.print(f"  {p}", markup=False)
        elif kind == "answer":
            ans = ev.answer
            c.print(f"[bold green]answer:[/] {ans.text}", markup=True)
            for line in ans.citations:
                c.print(f"  [dim]rests on[/] {line}", markup=True)
            if ans.run_dir:
                c.print(f"[dim]run folder: {ans.run_dir} (report.html)[/]", markup=True)
        elif kind == "failed":
            c.print(f"[bold red]no answer:[/] {ev.error.message}", markup=True)


def _read_line(prompt: str, interactive: bool) -> str | None:
    if interactive:
        try:
            return input(prompt)
        except EOFError:
            return None
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\n")


def _slash(command: str, arg: str, agent, console) -> bool:
    """Run a slash command; False means leave the chat."""
    from vistrace.errors import VistraceError

    session = agent.session
    last = agent.last
    if command in ("/exit", "/quit"):
        return False
    if command == "/help":
        console.print(CHAT_HELP, markup=False)
    elif command == "/image":
        if not arg:
            console.print("usage: /image PATH  (or /image NAME=PATH)", markup=False)
            return True
        name, path = _split_image(arg)
        try:
            added = session.add_image(path, name)
        except VistraceError as exc:
            console.print(f"[red]error:[/] {exc}", markup=True)
            return True
        console.print(f"added {added} = {path}", markup=False)
    elif command == "/images":
        for name, path in session.images().items():
            console.print(f"{name}: {path}", markup=False)
    elif command == "/program":
        program = getattr(last, "program", None) or (session.history()[-1].program if session.history() else None)
        console.print(program.strip() if program else "no program yet", markup=False)
    elif command == "/trace":
        run = getattr(last, "run", None)
        if run is not None:
            console.print(run.trace)
        else:
            turns = [t for t in session.history() if t.run_dir]
            if not turns:
                console.print("no trace yet", markup=False)
            else:
                from vistrace.trace import load_trace

                console.print(load_trace(Path(turns[-1].run_dir)))
    elif command == "/save":
        _save_last(agent, arg, console)
    elif command == "/history":
        for t in session.history():
            console.print(f"{t.number}. {t.question} -> {t.answer if t.ok else 'no answer: ' + str(t.error)}",
                          markup=False)
    elif command == "/resume":
        if session.pending() is None:
            console.print("nothing to resume", markup=False)
        else:
            printer = ChatPrinter(console)
            for ev in agent.stream_resume():
                printer(ev)
    else:
        console.print(f"unknown command {command}; {CHAT_HELP}", markup=False)
    return True


def _save_last(agent, arg: str, console) -> None:
    import shutil

    from vistrace.api import default_run_dir

    last = agent.last
    run = getattr(last, "run", None)
    dest = Path(arg) if arg else default_run_dir("chat")
    if run is not None:
        console.print(f"saved: {run.save(dest)} (report.html)", markup=False)
        return
    turns = [t for t in agent.session.history() if t.run_dir]
    if not turns:
        console.print("nothing to save yet", markup=False)
        return
    shutil.copytree(turns[-1].run_dir, dest, dirs_exist_ok=True)
    console.print(f"saved: {dest} (report.html)", markup=False)


def chat(
    session_name: str = typer.Option("default", "--session", "-s", help="session name (kept in $VISTRACE_HOME)"),
    image: list[str] = typer.Option([], "--image", "-i", help="an image for the session: PATH or NAME=PATH"),
    llm: Optional[str] = typer.Option(None, "--llm", help="local | local:qwen-1.5b | openai:URL#MODEL"),
    no_grammar: bool = typer.Option(False, "--no-grammar", help="do not constrain decoding (same as --decoding plain)"),
    decoding: str = typer.Option("auto", "--decoding", help=DECODING_HELP),
    max_repairs: int = typer.Option(3, "--max-repairs", min=0, max=20, help="repair attempts after the first plan"),
    max_reply_chars: int = typer.Option(32_000, "--max-reply-chars", min=1, help=REPLY_HELP),
    experts: Optional[str] = typer.Option(None, "--experts", envvar="VISTRACE_EXPERTS", help=EXPERTS_HELP),
    isolate: bool = typer.Option(True, "--isolate/--no-isolate", help=ISOLATE_HELP),
) -> None:
    """Chat about images; the session (turns and images) persists, so `--session NAME` continues it."""
    from vistrace.agent.agent import Agent
    from vistrace.agent.session import Session
    from vistrace.errors import VistraceError

    console = _console()
    interactive = sys.stdin.isatty()
    try:
        session = Session(session_name)
        for item in image:
            name, path = _split_image(item)
            session.add_image(path, name)
        agent = Agent(llm=llm, registry=_experts_registry(experts), session=session, max_repairs=max_repairs,
                      grammar=_decoding(decoding, no_grammar), isolate=isolate, max_reply_chars=max_reply_chars)
    except VistraceError as exc:
        _fail(str(exc), EXIT_REJECTED)
        return
    history = session.history()
    console.print(f"[bold]vistrace chat[/] — session [cyan]{session.name}[/] ({len(history)} earlier turns); "
                  "/help for commands", markup=True)
    for t in history[-3:]:
        console.print(f"  [dim]{t.number}. {t.question} -> {t.answer if t.ok else 'no answer'}[/]", markup=True)
    for name, path in session.images().items():
        console.print(f"  [dim]{name}: {path}[/]", markup=True)
    pending = session.pending()
    if pending:
        console.print(f"[yellow]the last turn was interrupted:[/] {pending} — /resume finishes it", markup=True)
    printer = ChatPrinter(console)
    while True:
        line = _read_line("you> ", interactive)
        if line is None:
            break
        line = line.strip()
        if not line:
            continue
        if not interactive:
            console.print(f"you> {line}", markup=False)
        try:
            if line.startswith("/"):
                command, _, arg = line.partition(" ")
                if not _slash(command.lower(), arg.strip(), agent, console):
                    break
                continue
            for ev in agent.stream(None, line):
                printer(ev)
        except KeyboardInterrupt:
            printer._end_tokens()
            console.print("[yellow]interrupted[/] — /resume continues the turn", markup=True)
        except VistraceError as exc:
            printer._end_tokens()
            console.print(f"[red]error:[/] {exc}", markup=True)
    session.close()


def sessions(as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """List the chat sessions: name, turns, last question, when updated."""
    from dataclasses import asdict

    from vistrace.agent.session import list_sessions

    infos = list_sessions()
    if as_json:
        sys.stdout.write(json.dumps([asdict(i) for i in infos], indent=2) + "\n")
        return
    if not infos:
        _console().print("no sessions yet (start one with `vistrace chat --session NAME`)", markup=False)
        return
    from rich.table import Table

    table = Table(title="vistrace sessions")
    for col in ("session", "turns", "last question", "updated"):
        table.add_column(col)
    for i in infos:
        last = (i.last_question or "") + (" (interrupted)" if i.pending else "")
        table.add_row(i.name, str(i.turns), last, i.updated.replace("T", " ")[:19])
    _console().print(table)


def register(app: Any) -> None:
    app.command()(ask)
    app.command()(chat)
    app.command()(sessions)
