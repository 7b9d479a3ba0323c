"""Resource limits of a run, with defaults, and the budget that enforces them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

from vistrace.errors import LimitExceeded, Location

_NESTED = (list, tuple, dict, set, frozenset)
_NESTED_SET = frozenset(_NESTED)
# approximate bytes per element of what a program makes (CPython, 64-bit), for max_memory
_ELEMENT_BYTES = {str: 1, list: 8, tuple: 8, dict: 100, set: 60, frozenset: 60}
_CLOCK_WORK = 1 << 16  # elements walked (see Budget.measure) between two reads of the clock


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
    # approximate bytes of the strings, collections and integers a run makes, counted as they are made
    # (not given back when freed): it bounds memory use, and quadratic copying, without the OS's help
    max_memory: int = 1_000_000_000

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
        self._max_int_bits, self._max_string = limits.max_int_bits, limits.max_string
        self._max_collection, self._max_memory = limits.max_collection, limits.max_memory
        self.memory = 0         # approximate bytes made so far (max_memory)
        self.work = 0           # elements walked by measure() so far
        self._next_clock = _CLOCK_WORK

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

    def made(self, value, where=None):
        """``check_size`` for a value just made, counting its approximate bytes towards max_memory.

        On every operator's result: the common cases take no further call.
        """
        t = type(value)
        if t is int:
            bits = value.bit_length()
            if bits > self._max_int_bits:
                self.check_size(value, where)
            if bits > 64:  # small integers are cheap (and mostly shared)
                self.memory += 28 + (bits >> 3)
        elif t is str:
            n = len(value)
            if n > self._max_string:
                self.check_size(value, where)
            self.memory += 64 + n
        else:
            n = len(value)
            if n > self._max_collection:
                self.check_size(value, where)
            self.memory += 64 + n * _ELEMENT_BYTES.get(t, 8)
        if self.memory > self._max_memory:
            self.alloc(0, where)
        return value

    def alloc(self, nbytes: int, where=None) -> None:
        """Count ``nbytes`` more towards max_memory."""
        self.memory += nbytes
        if self.memory > self.limits.max_memory:
            self._exceeded("max_memory", self.limits.max_memory,
                           f"the program made more than {self.limits.max_memory} bytes of strings and collections "
                           "(limit max_memory)", where)

    def measure(self, value, where=None, text: bool = False) -> int:
        """Refuse, before Python walks it in C (where neither a limit nor the clock can stop it), a value
        that one comparison, hash or (``text``) conversion to text would walk too far.

        Elements are counted as Python visits them: a list held 1000 times counts 1000 times, so a
        small program cannot build a value that takes hours to compare or terabytes to print.  The
        walk stops at 10 x max_collection elements (max_string characters for text) and at a nesting
        of 4 x max_nesting (deeper tuples crash CPython's hash); returns the count and charges it to
        the clock.
        """
        t = type(value)
        if t not in _NESTED:
            return len(value) if text and t is str else 1
        if not text and t is not dict and _NESTED_SET.isdisjoint(map(type, value)):
            n = len(value) + 1  # flat (no container inside): the walk below would count just this
            if n > 10 * self._max_collection:
                self._exceeded("max_collection", self._max_collection,
                               f"a value of {n} elements would be compared or hashed (limit max_collection)", where)
            self.charge(n, where)
            return n
        lim = self.limits
        cap, limit = (lim.max_string, "max_string") if text else (10 * lim.max_collection, "max_collection")
        max_depth = 4 * lim.max_nesting
        total = 0
        stack = [(value, 1)]
        while stack:
            v, depth = stack.pop()
            if depth > max_depth:
                self._exceeded("max_nesting", lim.max_nesting,
                               f"a value nests deeper than {max_depth} levels (4 x max_nesting)", where)
            tv = type(v)
            items = (*v.keys(), *v.values()) if tv is dict else v
            total += 1 + len(items)
            if total > cap:
                break
            kinds = set(map(type, items))  # at C speed: most values hold no containers at all
            if kinds.isdisjoint(_NESTED) and not (text and str in kinds):
                continue
            for x in items:
                tx = type(x)
                if tx in _NESTED:
                    stack.append((x, depth + 1))
                elif text and tx is str:
                    total += len(x)
            if total > cap:
                break
        if total > cap:
            what = "written as text" if text else "compared or hashed"
            self._exceeded(limit, lim.max_string if text else lim.max_collection,
                           f"a value of more than {cap} {'characters' if text else 'elements'} (shared parts "
                           f"counted each time) would be {what} (limit {limit})", where)
        self.charge(total, where)
        return total

    def charge(self, work: int, where=None) -> None:
        """Count work done inside one operation; the clock is read every few ten thousand elements."""
        self.work += work
        if self.work >= self._next_clock:
            self._next_clock = self.work + _CLOCK_WORK
            self.check_time(where)

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
