"""Run an evaluation set: one folder per item (kept between runs), summary.json and report.html.

Resuming: an item whose ``result.json`` is already in its folder is kept, not re-run (pass
``retry_errors=True`` to re-run the items that ended in an error). Every item's result is written
as soon as it is known, so an interrupted evaluation loses at most the item in progress. An item
that raises an unexpected exception (a bug) is recorded as an error with its traceback in
``error.txt`` and the evaluation goes on.
"""

from __future__ import annotations

import json
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vistrace.errors import InputError, VistraceError

from .base import EvalItem, EvalSet, ItemResult, slug

RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
SUMMARY_FILE = "summary.json"
ITEMS_DIR = "items"


@dataclass
class Summary:
    """What ``summary.json`` holds (see the output contract in docs/results.md)."""

    set: str
    items: int
    metrics: dict[str, float]
    errors: int
    command: str
    config: dict[str, Any] = field(default_factory=dict)
    resumed: int = 0
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"set": self.set, "items": self.items, "metrics": self.metrics, "errors": self.errors,
                "command": self.command, "config": self.config, "resumed": self.resumed,
                "seconds": round(self.seconds, 3)}


def _load(path: Path) -> ItemResult | None:
    try:
        return ItemResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None  # unreadable or from an older format: evaluate again


def _evaluate(evalset: EvalSet, item: EvalItem, folder: Path) -> ItemResult:
    t0 = time.perf_counter()
    try:
        result = evalset.evaluate(item, folder)
    except VistraceError as exc:  # an item that cannot be evaluated counts as failed, with the reason kept
        result = ItemResult(item.id, score=0.0, error=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a bug on one item must not end a long evaluation; kept loudly
        (folder / ERROR_FILE).write_text(traceback.format_exc(), encoding="utf-8")
        result = ItemResult(item.id, score=0.0,
                            error=f"internal error {type(exc).__name__}: {exc} (traceback in {ERROR_FILE}; "
                                  "please report it)")
    result.seconds = result.seconds or time.perf_counter() - t0
    return result


def run_eval(evalset: EvalSet, out: str | Path, *, command: str = "", retry_errors: bool = False,
             limit: int | None = None, fresh: bool = False,
             on_item: Callable[[ItemResult, bool], None] | None = None, progress: bool = True,
             workers: int = 1, factory: Callable[[], EvalSet] | None = None, ray: bool = False) -> Summary:
    """Evaluate every item of ``evalset`` into ``out``; write summary.json and report.html.

    ``limit`` evaluates only the first N items; ``fresh`` deletes earlier item results first.
    ``on_item(result, resumed)`` is called after each item. ``workers`` > 1 spreads the items over
    that many processes; each builds its own set with ``factory`` (a picklable callable, e.g. a
    ``functools.partial`` of a module-level function) — models are loaded once per process.
    ``ray``: the workers are Ray actors instead (a local Ray instance, or the cluster ``$RAY_ADDRESS``
    names; ``out`` must then be on a filesystem every node sees).
    """
    from .report import write_report

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file", hint="give a folder for the results")
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if (workers > 1 or ray) and factory is None:
        raise InputError("workers > 1 (or ray) needs a factory that builds the evaluation set in each worker process")
    items = evalset.items()
    if limit is not None:
        items = items[:max(0, limit)]
    if not items:
        raise InputError(f"the {evalset.name} set has no items", hint="check the data paths given")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InputError(f"item id {dup!r} appears more than once in the {evalset.name} set")
    items_dir = out / ITEMS_DIR
    if fresh and items_dir.exists():
        shutil.rmtree(items_dir)
    items_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    done: dict[str, ItemResult] = {}
    pending: list[tuple[EvalItem, Path]] = []
    resumed = 0
    with _progress(progress, evalset.name, len(items)) as advance:
        for item in items:
            folder = items_dir / slug(item.id)
            saved = _load(folder / RESULT_FILE) if (folder / RESULT_FILE).exists() else None
            if saved is not None and saved.id == item.id and not (retry_errors and saved.error):
                done[item.id] = saved
                resumed += 1
                if on_item is not None:
                    on_item(saved, True)
                advance(item.id)
            else:
                if folder.exists():
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                pending.append((item, folder))

        def finished(item: EvalItem, folder: Path, result: ItemResult) -> None:
            result.folder = f"{ITEMS_DIR}/{folder.name}"
            (folder / RESULT_FILE).write_text(json.dumps(result.to_json(), indent=1, default=str), encoding="utf-8")
            done[item.id] = result
            if on_item is not None:
                on_item(result, False)
            advance(item.id)

        if ray and pending:
            from .ray_workers import in_ray

            in_ray(pending, workers, factory, finished)
        elif workers > 1 and len(pending) > 1:
            _in_processes(pending, workers, factory, finished)
        else:
            for item, folder in pending:
                finished(item, folder, _evaluate(evalset, item, folder))
    results = [done[i] for i in ids]
    summary = Summary(set=evalset.name, items=len(results), metrics=evalset.metrics(results),
                      errors=sum(1 for r in results if r.error), command=command, config=evalset.config(),
                      resumed=resumed, seconds=time.perf_counter() - t0)
    (out / SUMMARY_FILE).write_text(json.dumps(summary.to_json(), indent=2), encoding="utf-8")
    write_report(out, summary, results)
    return summary


_WORKER_SET: EvalSet | None = None


def _worker_init(factory: Callable[[], EvalSet]) -> None:
    global _WORKER_SET
    _WORKER_SET = factory()


def _worker_evaluate(item: EvalItem, folder: str) -> ItemResult:
    assert _WORKER_SET is not None, "worker not initialised"
    return _evaluate(_WORKER_SET, item, Path(folder))


def _in_processes(pending, workers: int, factory, finished) -> None:
    """Evaluate ``pending`` items in ``workers`` spawned processes (spawn: no forked model threads)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(pending)), mp_context=ctx, initializer=_worker_init,
                             initargs=(factory,)) as pool:
        futures = {pool.submit(_worker_evaluate, item, str(folder)): (item, folder) for item, folder in pending}
        for fut in as_completed(futures):
            item, folder = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died: the item is an error, the rest go on
                result = ItemResult(item.id, score=0.0, error=f"worker failed: {type(exc).__name__}: {exc}")
            finished(item, folder, result)


class _progress:
    """A rich progress bar on stderr (or nothing); ``advance(label)`` moves it one item."""

    def __init__(self, enabled: bool, name: str, total: int):
        self.enabled, self.name, self.total = enabled, name, total
        self.bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda label: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(f"[bold]{self.name}[/]"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), TextColumn("[dim]{task.description}[/]"),
                            console=Console(stderr=True), transient=False)
        self.bar.__enter__()
        task = self.bar.add_task("", total=self.total)
        return lambda label: self.bar.update(task, advance=1, description=str(label)[:40])

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
