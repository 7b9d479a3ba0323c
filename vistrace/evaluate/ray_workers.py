"""``vistrace eval ... --workers N --ray``: the items evaluated by N Ray actors.

Each actor builds the evaluation set once with the factory (so it loads its models once) and
evaluates the items it is given, writing each item's run folder itself — on a cluster the output
folder must be on a filesystem every node sees. Ray places the actors (one CPU each) on the
machines of the cluster: a local instance when ``$RAY_ADDRESS`` is unset, else that cluster. An actor
that dies costs only the item it held: that item is recorded as an error and a new actor takes its
place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .base import EvalItem, EvalSet, ItemResult


class EvalActor:
    """One Ray actor: the set built by ``factory``, answering ``evaluate(item, folder)``."""

    def __init__(self, factory: Callable[[], EvalSet]):
        self.evalset = factory()

    def evaluate(self, item: EvalItem, folder: str) -> ItemResult:
        from .runner import _evaluate

        return _evaluate(self.evalset, item, Path(folder))


def in_ray(pending: list[tuple[EvalItem, Path]], workers: int, factory: Callable[[], EvalSet], finished) -> None:
    """Evaluate ``pending`` on ``workers`` Ray actors, calling ``finished(item, folder, result)`` as each ends."""
    import ray

    started = False
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "log_to_driver": False}
        if not os.environ.get("RAY_ADDRESS"):
            kw["num_cpus"] = max(workers, os.cpu_count() or 1)
        ray.init(**kw)
        started = True
    try:
        Actor = ray.remote(num_cpus=1)(EvalActor)
        idle = [Actor.remote(factory) for _ in range(min(workers, len(pending)))]
        queue = list(pending)
        running: dict = {}
        while queue or running:
            while idle and queue:
                actor = idle.pop()
                item, folder = queue.pop(0)
                running[actor.evaluate.remote(item, str(folder))] = (actor, item, folder)
            ready, _ = ray.wait(list(running), num_returns=1)
            actor, item, folder = running.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001 - the actor died or failed to build: the item is an error
                result = ItemResult(item.id, score=0.0, error=f"ray worker failed: {type(exc).__name__}: {exc}")
                ray.kill(actor)
                actor = Actor.remote(factory)
            idle.append(actor)
            finished(item, folder, result)
    finally:
        if started:
            ray.shutdown()
