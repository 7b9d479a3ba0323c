"""``vistrace eval``: run a published evaluation set; write summary.json, report.html and one folder per item.

Registered on the main app by :func:`register`; the families load inside the commands, so
``vistrace --help`` stays instant. Exit codes: 0 evaluated (items may have failed — that is the
result); 2 a bad input (missing files, unknown format).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli_common import EXIT_OK, EXIT_REJECTED, _console, _fail

eval_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                       help="Evaluate on a public set: summary.json + report.html + one folder per item (resumable).")

OUT_HELP = "output folder; items already scored there are kept (resume)"
EXPERTS_HELP = "run the expert tools on this `vistrace serve` host (token: $VISTRACE_EXPERTS_TOKEN)"


def _registry(experts: Optional[str]):
    if not experts:
        return None
    from .serve import remote_registry

    return remote_registry(experts)


def _command() -> str:
    return "vistrace " + shlex.join(sys.argv[1:])


def _run(builder, kwargs: dict, out: Path, limit: Optional[int], fresh: bool, retry_errors: bool, quiet: bool,
         workers: int = 1, ray: bool = False) -> None:
    """Build the set (``builder(**kwargs)``, again in each worker process) and evaluate it."""
    import functools

    from rich.table import Table

    from .evaluate import run_eval

    console = _console()
    evalset = builder(**kwargs)
    summary = run_eval(evalset, out, command=_command(), limit=limit, fresh=fresh, retry_errors=retry_errors,
                       progress=not quiet, workers=workers, ray=ray,
                       factory=functools.partial(builder, **kwargs) if workers > 1 or ray else None)
    table = Table(title=f"{summary.set}: {summary.items} items, {summary.errors} errors, "
                        f"{summary.resumed} kept from an earlier run")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in summary.metrics.items():
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"summary: {out / 'summary.json'}\nreport:  {out / 'report.html'}", markup=False)


# the sets, built from plain arguments (picklable, so worker processes can build them too) -----------

def build_vpeval(prompts: Optional[str], images: str, judge: str, vqa: bool, llm: Optional[str],
                 experts: Optional[str]):
    from vistrace.programs.families.vpeval import VPEvalSet
    from vistrace.programs.families.vpeval_programs import load_tasks, tasks_from_image_names

    if prompts is None and not Path(images).is_dir():
        from .errors import InputError

        raise InputError(f"--images {images}: no such folder")
    tasks = load_tasks(prompts) if prompts is not None else tasks_from_image_names(Path(images))
    return VPEvalSet(tasks, images, judge=judge, vqa=vqa, planner=_planner(llm), source=str(prompts or images),
                     registry=_registry(experts))


def build_geneval(metadata: Optional[str], images: str, threshold: float, counting_threshold: float, vqa: bool,
                  experts: Optional[str]):
    from vistrace.programs.families.geneval import GenEvalSet

    return GenEvalSet(metadata, images, threshold=threshold, counting_threshold=counting_threshold, vqa=vqa,
                      registry=_registry(experts))


def build_vpgen(prompts: str, generator: str, llm: Optional[str], experts: Optional[str]):
    from vistrace.programs.families.vpgen import vpgen_set

    return vpgen_set(prompts, generator=generator, planner=_planner(llm), registry=_registry(experts))


def build_textcot(set_name: str, data: str, llm: Optional[str], baseline: bool, fields: Optional[list[str]],
                  experts: Optional[str] = None):
    from vistrace.programs.families.textcot import textcot_set

    return textcot_set(set_name, Path(data), llm=llm, baseline=baseline, fields=fields, experts=experts)


def _planner(llm: Optional[str]):
    if llm is None:
        return None
    from vistrace.programs.families.vpeval_planner import VPEvalPlanner

    return VPEvalPlanner(llm)


WORKERS_HELP = "evaluate items in N processes (each loads its own models)"

# the options every `vistrace eval` command has
LimitOpt = Annotated[Optional[int], typer.Option("--limit", help="evaluate only the first N items")]
FreshOpt = Annotated[bool, typer.Option("--fresh", help="discard earlier item results in --out")]
RetryOpt = Annotated[bool, typer.Option("--retry-errors", help="re-run items that ended in an error")]
ExpertsOpt = Annotated[Optional[str], typer.Option("--experts", envvar="VISTRACE_EXPERTS", help=EXPERTS_HELP)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1, max=64, help=WORKERS_HELP)]
RayOpt = Annotated[bool, typer.Option("--ray", help="the --workers are Ray actors: a local Ray instance, or the "
                                                    "cluster named by $RAY_ADDRESS (--out on a shared filesystem)")]


def _guard(fn):
    """Bad inputs (InputError) end the command with exit code 2 and the message, not a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from .errors import InputError

        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            _fail(str(exc), EXIT_REJECTED, hint=getattr(exc, "hint", None))

    return wrapper


@eval_app.command("vpeval")
@_guard
def vpeval_cmd(
    images: Path = typer.Option(..., "--images", help="folder of the generated images (naming: docs/results.md)"),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    prompts: Optional[Path] = typer.Option(None, "--prompts",
                                           help="VPEval skill-based or open-ended JSON, a JSON list of prompts, or a "
                                                "text file of prompts; omitted: the prompts are the image names "
                                                "(T2I-CompBench's <prompt>_<NNNNNN>.png)"),
    judge: str = typer.Option("vpeval", "--judge", help="spatial rule: vpeval (centres, 5 px) or geneval"),
    vqa: bool = typer.Option(False, "--vqa/--no-vqa", help="run the vqa modules (needs an ask backend)"),
    llm: Optional[str] = typer.Option(None, "--llm", help="let this LLM write programs for prompts no template fits "
                                                          "(local, local:qwen-1.5b, openai:URL#MODEL)"),
    limit: LimitOpt = None,
    fresh: FreshOpt = False,
    retry_errors: RetryOpt = False,
    experts: ExpertsOpt = None,
    quiet: QuietOpt = False,
    workers: WorkersOpt = 1,
    ray: RayOpt = False,
) -> None:
    """VPEval: skill programs from annotations (or planned from prompts), a score and a sentence per module."""
    _run(build_vpeval, {"prompts": str(prompts) if prompts else None, "images": str(images), "judge": judge,
                        "vqa": vqa, "llm": llm, "experts": experts}, out, limit, fresh, retry_errors, quiet, workers, ray)
    raise typer.Exit(EXIT_OK)


@eval_app.command("geneval")
@_guard
def geneval_cmd(
    images: Path = typer.Option(..., "--images", help="GenEval's layout: <images>/<NNNNN>/samples/<NNNN>.png"),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="evaluation_metadata.jsonl (default: each "
                                                                     "folder's metadata.jsonl)"),
    threshold: float = typer.Option(0.0, "--threshold", help="detection confidence kept (0: the detector's own "
                                                             "default; GenEval publishes 0.3 for Mask2Former)"),
    counting_threshold: float = typer.Option(0.0, "--counting-threshold",
                                             help="confidence for counting prompts (GenEval publishes 0.9)"),
    vqa: bool = typer.Option(False, "--vqa/--no-vqa", help="check colours with the ask tool (needs a backend)"),
    limit: LimitOpt = None,
    fresh: FreshOpt = False,
    retry_errors: RetryOpt = False,
    experts: ExpertsOpt = None,
    quiet: QuietOpt = False,
    workers: WorkersOpt = 1,
    ray: RayOpt = False,
) -> None:
    """GenEval: object, count, colour and position clauses from metadata; an image is correct when all hold."""
    _run(build_geneval, {"metadata": str(metadata) if metadata else None, "images": str(images),
                         "threshold": threshold, "counting_threshold": counting_threshold, "vqa": vqa,
                         "experts": experts}, out, limit, fresh, retry_errors, quiet, workers, ray)
    raise typer.Exit(EXIT_OK)


@eval_app.command("vpgen")
@_guard
def vpgen_cmd(
    prompts: Path = typer.Option(..., "--prompts", help="prompts: a text file (one per line, e.g. T2I-CompBench's "
                                                        "lists) or JSON as for `eval vpeval`"),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    generator: str = typer.Option("auto", "--generator", help="gligen (diffusers GLIGEN weights you bring), sketch "
                                                              "(judge the layout itself) or auto"),
    llm: Optional[str] = typer.Option(None, "--llm", help="LLM for VPEval programs no template fits"),
    limit: LimitOpt = None,
    fresh: FreshOpt = False,
    retry_errors: RetryOpt = False,
    experts: ExpertsOpt = None,
    quiet: QuietOpt = False,
    workers: WorkersOpt = 1,
    ray: RayOpt = False,
) -> None:
    """VPGen: objects -> layout -> image for each prompt, then VPEval on the result (offline: on the layout)."""
    _run(build_vpgen, {"prompts": str(prompts), "generator": generator, "llm": llm, "experts": experts}, out, limit,
         fresh, retry_errors, quiet, workers, ray)
    raise typer.Exit(EXIT_OK)


@eval_app.command("textcot")
@_guard
def textcot_cmd(
    data: Path = typer.Option(..., "--data", help="the set's folder, e.g. ../shared/data/sroie"),
    out: Path = typer.Option(..., "--out", help=OUT_HELP),
    set_name: str = typer.Option("sroie", "--set", help="which set: sroie"),
    llm: Optional[str] = typer.Option(None, "--llm", help="the LLM (default: $VISTRACE_LLM or local)"),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="also answer without zooming (full-image "
                                                                         "OCR + LLM)"),
    field: list[str] = typer.Option([], "--field", help="only these key fields (repeat): total, date, company"),
    limit: LimitOpt = None,
    fresh: FreshOpt = False,
    retry_errors: RetryOpt = False,
    experts: ExpertsOpt = None,
    quiet: QuietOpt = False,
    workers: WorkersOpt = 1,
    ray: RayOpt = False,
) -> None:
    """TextCoT: overview, coarse localization, zoom, answer — beside a no-zoom baseline, accuracy and latency."""
    _run(build_textcot, {"set_name": set_name, "data": str(data), "llm": llm, "baseline": baseline,
                         "fields": list(field) or None, "experts": experts}, out, limit, fresh, retry_errors, quiet, workers, ray)
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    """Add ``vistrace eval ...`` to the main app."""
    app.add_typer(eval_app, name="eval")
