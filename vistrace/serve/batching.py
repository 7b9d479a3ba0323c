"""Dynamic batching on the server: concurrent requests for one backend answered by one ``run_batch``.

A backend that has ``run_batch(images, **same_args) -> list`` (YOLO, Grounding DINO/OWL, DPT,
Depth-Anything, diffusers) is wrapped in a :class:`BatchingBackend`. Each request still runs in its
own worker thread: its ``run(image=..., **args)`` joins the queue of requests with the same other
arguments (e.g. the same labels and threshold) and waits. The queue is answered as one batch when
it holds ``max_batch`` requests or ``max_wait_ms`` after its first request, whichever comes first.
A batch that fails fails every request in it, with the same error. Backends without ``run_batch``
are served one request at a time, unchanged.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable

from vistrace.tools.backends import Backend, WrappedBackend


@dataclass(frozen=True)
class BatchConfig:
    """``max_batch`` requests per backend call at most; a queue waits ``max_wait_ms`` for company."""

    max_batch: int = 8
    max_wait_ms: float = 10.0


def _key(args: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in sorted(args.items())}, default=repr, sort_keys=True)


class BatchingBackend(WrappedBackend):
    """A backend whose single calls are grouped into ``run_batch`` calls (see the module docstring)."""

    def __init__(self, inner: Backend, config: BatchConfig, on_batch: Callable[[str, int], None] | None = None):
        super().__init__(inner)
        self.config, self.on_batch = config, on_batch
        self._queues: dict[str, list[tuple[Any, Future]]] = {}
        self._lock = threading.Lock()

    def how(self) -> str:
        return f"batched up to {self.config.max_batch}, {self.config.max_wait_ms:g} ms"

    def extra(self) -> dict[str, Any]:
        return {"batching": {"max_batch": self.config.max_batch, "max_wait_ms": self.config.max_wait_ms}}

    def run(self, image=None, **args: Any) -> Any:
        if image is None:
            return self.inner.run(**args)
        key = _key(args)
        fut: Future = Future()
        with self._lock:
            queue = self._queues.setdefault(key, [])
            queue.append((image, fut))
            first, full = len(queue) == 1, len(queue) >= self.config.max_batch
            if full:
                batch = self._queues.pop(key)
        if full:
            self._flush(batch, args)
        elif first:
            timer = threading.Timer(self.config.max_wait_ms / 1000.0, self._flush_key, (key, args))
            timer.daemon = True
            timer.start()
        return fut.result()

    def _flush_key(self, key: str, args: dict[str, Any]) -> None:
        with self._lock:
            batch = self._queues.pop(key, None)
        if batch:
            self._flush(batch, args)

    def _flush(self, batch: list[tuple[Any, Future]], args: dict[str, Any]) -> None:
        images = [im for im, _ in batch]
        if self.on_batch is not None:
            self.on_batch(self.inner.name, len(batch))
        try:
            results = self.inner.run_batch(images, **args) if len(batch) > 1 else [self.inner.run(image=images[0], **args)]
            if len(results) != len(batch):
                raise RuntimeError(f"{self.inner.name}.run_batch returned {len(results)} results for {len(batch)} images")
        except BaseException as exc:  # noqa: BLE001 - every waiting request gets the batch's error
            for _, f in batch:
                f.set_exception(exc)
            return
        for (_, f), r in zip(batch, results):
            f.set_result(r)


def batched_registry(registry, config: BatchConfig, on_batch=None):
    """A copy of ``registry`` whose backends with ``run_batch`` are wrapped in :class:`BatchingBackend`."""
    import copy

    def wrap(t):
        own = copy.copy(t)
        own.backends = [BatchingBackend(b, config, on_batch) if callable(getattr(b, "run_batch", None)) else b
                        for b in t.backends]
        return own

    return registry.derived(wrap)
