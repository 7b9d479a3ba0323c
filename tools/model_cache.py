"""The in-process model cache: weights load lazily, once, and stay while they fit a memory budget.

Loaded models are kept by key in least-recently-used order; when the total estimated size passes
the budget (``$VISTRACE_MODEL_MEMORY_MB``, default 4 GB), the least recently used ones are dropped.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from vistrace.config import model_memory_budget


class ModelCache:
    def __init__(self, budget_bytes: int | None = None):
        self.budget = budget_bytes if budget_bytes is not None else model_memory_budget()
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.loads: dict[str, int] = {}   # key -> how many times it was loaded (for tests and doctor)

    def get(self, key: str, loader: Callable[[], Any], size_bytes: int | Callable[[Any], int] = 0) -> Any:
        """The model for ``key``, loading it with ``loader()`` on first use (one load even under threads)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key][0]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key][0]
            model = loader()
            size = size_bytes(model) if callable(size_bytes) else int(size_bytes)
            with self._lock:
                self._items[key] = (model, size)
                self.loads[key] = self.loads.get(key, 0) + 1
                self._evict(keep=key)
            return model

    def _evict(self, keep: str) -> None:
        total = sum(size for _, size in self._items.values())
        for key in list(self._items):
            if total <= self.budget:
                break
            if key == keep:
                continue
            total -= self._items.pop(key)[1]

    def loaded(self) -> dict[str, int]:
        with self._lock:
            return {k: size for k, (_, size) in self._items.items()}

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


MODELS = ModelCache()  # the process-wide cache that backends use
