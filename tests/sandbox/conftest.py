"""Shared fixtures for the sandbox tests: a small registry of real plain tools and a recording caller."""

from __future__ import annotations

import threading
import time

import pytest

from vistrace.tools import Registry, tool


@tool()
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: first number
        b: second number
    """
    return a + b


@tool()
def slow_double(x: int, delay: float = 0.2) -> int:
    """Double a number after waiting (to observe concurrent dispatch).

    Args:
        x: the number
        delay: seconds to wait
    """
    time.sleep(delay)
    return 2 * x


@tool()
def shout(text: str, times: int = 1) -> str:
    """Upper-case a text and repeat it.

    Args:
        text: the text
        times: how many times
    """
    return text.upper() * times


@tool()
def boom(reason: str) -> str:
    """Fail on purpose with a ValueError naming the reason.

    Args:
        reason: what to say
    """
    raise ValueError(reason)


class RecordingCaller:
    """A ToolCaller that runs registry tools and remembers the order of steps."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.sites = []
        self.lock = threading.Lock()
        self.started: dict[int, float] = {}
        self.finished: dict[int, float] = {}

    def begin(self, sig, site):
        with self.lock:
            self.sites.append((sig.name, site))
            return len(self.sites)

    def call(self, step, sig, args):
        self.started[step] = time.perf_counter()
        value = self.registry.get(sig.tool)(**args)
        self.finished[step] = time.perf_counter()
        return value


@pytest.fixture()
def registry() -> Registry:
    reg = Registry()
    for t in (add, slow_double, shout, boom):
        reg.add(t)
    reg.alias("ADD", "add", renames={"left": "a", "right": "b"}, style="visprog")
    return reg


@pytest.fixture()
def caller(registry):
    return RecordingCaller(registry)


@pytest.fixture()
def execute(registry, caller):
    """Parse, check (must be clean) and run a program with the test registry."""
    from vistrace.sandbox import Interpreter, Limits, check, errors, parse

    def _run(source: str, limits: Limits | None = None, parallel: int = 1, **inputs):
        prog = parse(source, limits=limits)
        problems = errors(check(prog, registry, limits))
        assert not problems, problems
        return Interpreter(prog, registry, caller, limits, parallel).run(inputs)

    return _run
