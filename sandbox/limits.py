"""Resource limits of a run, with defaults, and the budget that enforces them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

from vistrace.errors import LimitExceeded, Location


def _where(at) -> Location | None:
    if at is None or isinstance(at, Location):
        return at
    return Location(line=getattr(at, "lineno", None), col=getattr(at, "col_offset", None))


@dataclass(frozen=True)
class Limits:
    """Every limit is configurable (API keyword, ``--limit NAME=VALUE`` on the CLI)."""

    max_steps: int = 10_000           # statements and tool calls executed
    max_tool_calls: int = 500         # tool calls (each is a trace step)
    max_seconds: float = 600.0        # wall time of the whole run
    max_loop_iterations: int = 100_000  # total iterations of all loops and comprehensions
    max_collection: int = 100_000     # elements of any list/tuple/dict/set produced
    max_string: int = 1_000_000       # characters of any string produced
    max_int_bits: int = 4_096         # size of any integer produced
    max_call_depth: int = 32          # nesting of calls to program-defined functions
    max_nesting: int = 60             # syntactic nesting depth of the program
    max_source_chars: int = 200_000   # size of the program text

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_pairs(cls, pairs: dict[str, str]) -> "Limits":
        """Build from NAME=VALUE strings (CLI); unknown names and bad numbers are clear errors."""
        from vistrace.errors import InputError

        known = {f.name: f.type for f in fields(cls)}
        values = {}
        for name, raw in pairs.items():
            key = name if name.startswith("max_") else f"max_{name}"
            if key not in known:
                raise InputError(f"unknown limit '{name}'", hint="known limits: " + ", ".join(sorted(known)))
            try:
                values[key] = float(raw) if key == "max_seconds" else int(raw)
            except ValueError:
                raise InputError(f"limit '{name}' expects a number, got {raw!r}") from None
            if values[key] <= 0:
                raise InputError(f"limit '{name}' must be positive, got {raw!r}")
        return cls(**values)


class Budget:
    """Counts what a run uses and raises :class:`LimitExceeded` naming the limit that was hit."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.steps = 0
        self.tool_calls = 0
        self.loop_iterations = 0
        self.call_depth = 0
        self.started = time.monotonic()
        self._deadline = self.started + limits.max_seconds
        self._max_steps = limits.max_steps
        self._max_tool_calls = limits.max_tool_calls

    def _exceeded(self, limit: str, value, message: str, where=None):
        raise LimitExceeded(limit, value, message, where=_where(where))

    def step(self, where=None) -> None:
        """Count one executed statement; ``where`` is the node (or Location) to blame.

        The clock is read every 32 statements (and at every tool call), which keeps the check cheap.
        """
        self.steps += 1
        if self.steps > self._max_steps or not self.steps & 31:
            self.after_step(where)

    def after_step(self, where=None) -> None:
        """The slow part of ``step`` (hot loops inline the counter and call this only when due)."""
        if self.steps > self._max_steps:
            self._exceeded("max_steps", self.limits.max_steps,
                           f"the program ran more than {self.limits.max_steps} steps (limit max_steps)", where)
        self.check_time(where)

    def check_time(self, where=None) -> None:
        if time.monotonic() > self._deadline:
            self._exceeded("max_seconds", self.limits.max_seconds,
                           f"the program ran longer than {self.limits.max_seconds:g} s (limit max_seconds)", where)

    def tool_call(self, where=None) -> None:
        self.tool_calls += 1
        self.after_tool_call(where)

    def after_tool_call(self, where=None) -> None:
        """The checks after counting a tool call (hot paths inline the counter)."""
        if self.tool_calls > self.limits.max_tool_calls:
            self._exceeded("max_tool_calls", self.limits.max_tool_calls,
                           f"the program made more than {self.limits.max_tool_calls} tool calls (limit max_tool_calls)",
                           where)
        self.check_time(where)

    def iteration(self, where=None) -> None:
        self.loop_iterations += 1
        if self.loop_iterations > self.limits.max_loop_iterations:
            self._exceeded("max_loop_iterations", self.limits.max_loop_iterations,
                           f"loops ran more than {self.limits.max_loop_iterations} iterations in total "
                           "(limit max_loop_iterations)", where)
        if self.loop_iterations % 256 == 0:
            self.step(where)

    def enter_call(self, where=None) -> None:
        self.call_depth += 1
        if self.call_depth > self.limits.max_call_depth:
            self._exceeded("max_call_depth", self.limits.max_call_depth,
                           f"function calls nested deeper than {self.limits.max_call_depth} (limit max_call_depth)",
                           where)

    def leave_call(self) -> None:
        self.call_depth -= 1

    def check_size(self, value, where=None):
        """Reject strings, collections and integers past their limits; returns the value."""
        lim = self.limits
        if isinstance(value, str):
            if len(value) > lim.max_string:
                self._exceeded("max_string", lim.max_string,
                               f"a string of {len(value)} characters exceeds the limit max_string={lim.max_string}",
                               where)
        elif isinstance(value, (list, tuple, dict, set, frozenset)):
            if len(value) > lim.max_collection:
                self._exceeded("max_collection", lim.max_collection,
                               f"a {type(value).__name__} of {len(value)} elements exceeds the limit "
                               f"max_collection={lim.max_collection}", where)
        elif isinstance(value, int) and not isinstance(value, bool):
            if value.bit_length() > lim.max_int_bits:
                self._exceeded("max_int_bits", lim.max_int_bits,
                               f"an integer of {value.bit_length()} bits exceeds the limit max_int_bits={lim.max_int_bits}",
                               where)
        return value
