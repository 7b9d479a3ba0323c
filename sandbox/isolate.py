"""Worker-process isolation: the OS boundary around the interpreter (the language boundary).

``run_isolated`` runs a checked program in a child process (``python -I -B -m
vistrace.sandbox.isolate_child``) that starts with none of this process's environment, a scratch working
directory, no inherited handles (stdin is /dev/null, only its two pipes are passed) and resource
limits (address space, CPU time, open files, file size, no core dumps) applied before it reads the
program.  Tool calls come back to this process over the pipes and run here through the real
:class:`ToolCaller`, so models stay loaded in the parent and the trace is recorded here; a child that
runs past ``Limits.max_seconds`` plus a grace is killed and the steps already done stay in the trace.

Messages are frames: a JSON header plus raw byte blobs (pixels, NPY arrays via
:mod:`vistrace.values.codec`) — never pickle, in either direction.  A value this process sent keeps a
handle, so when the child passes it back (an image to the next tool) the parent uses its own object
and trusts nothing the child says about it::

    parent -> child  {op: start, program, name, limits, parallel, signatures, values}
    child  -> parent {op: begin, id, name, site}          parent -> child {id, step}
    child  -> parent {op: call, id, step, name, args}     parent -> child {id, value} | {id, error}
    child  -> parent {op: done, outcome} | {op: error, error} | {op: internal, message}
"""

from __future__ import annotations

import ast
import os
import queue
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from vistrace.errors import InputError, IsolationError, LimitExceeded, RuntimeProgramError, ToolError, VistraceError

from .interface import CallSite
from .isolate_child import (EXIT_MEMORY, EXIT_NO_FILTER, FrameParser, Packer, ProtocolError, error_from_record,
                            error_record, frame_parts)
from .limits import Limits

__all__ = ["Isolation", "ProtocolError", "Worker", "child_command", "child_environment", "cpu_limit", "run_isolated"]

CHILD_MODULE = "vistrace.sandbox.isolate_child"
# fixed settings, never copied from the parent: numerical libraries start one thread, not one per core;
# a UTF-8 character type (else Python's locale coercion adds this very variable itself)
_CHILD_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LC_CTYPE": "C.UTF-8"}


@dataclass(frozen=True)
class Isolation:
    """The worker's OS limits.  ``isolate=True`` means ``Isolation()``; pass one to change a limit."""

    memory_mb: int = 2048             # RLIMIT_AS: address space of the worker
    cpu_seconds: float | None = None  # RLIMIT_CPU; default max_seconds + 2 * grace_seconds + 1
    open_files: int = 64              # RLIMIT_NOFILE
    file_size: int = 0                # RLIMIT_FSIZE in bytes: 0 means the worker cannot write to any file
    grace_seconds: float = 2.0        # after max_seconds, time for the worker to stop by itself before it is killed
    syscall_filter: bool = True       # seccomp: no processes, sockets, namespaces, tracing (sandbox/syscalls.py)
    python: str | None = None         # the worker's interpreter (default: this one, sys.executable)

    def __post_init__(self):
        for name in ("memory_mb", "open_files", "grace_seconds"):
            if not getattr(self, name) > 0:
                raise InputError(f"isolation setting {name} must be positive, got {getattr(self, name)!r}")
        if self.memory_mb < 64:
            raise InputError(f"isolation setting memory_mb={self.memory_mb} is too small for a Python worker",
                             hint="give at least 64 (MiB)")
        if self.file_size < 0 or (self.cpu_seconds is not None and not self.cpu_seconds > 0):
            raise InputError("isolation settings file_size must be >= 0 and cpu_seconds positive")

    @classmethod
    def of(cls, value: Any) -> "Isolation | None":
        """None for no isolation; True -> the defaults; an Isolation or a dict of its fields."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError as exc:
                raise InputError(f"isolate: {exc}", hint="fields: " + ", ".join(asdict(cls()))) from None
        raise InputError(f"isolate must be True, False or an Isolation, got {type(value).__name__}")

    def to_json(self) -> dict:
        return asdict(self)


def child_environment() -> dict[str, str]:
    """The worker's whole environment: nothing from this process, only fixed thread settings."""
    return dict(_CHILD_ENV)


def child_command(iso: Isolation, limits: Limits, down: int, up: int, entry: list[str] | None = None) -> list[str]:
    """The worker's argv: isolated mode (-I: no PYTHON* variables, no user site, no cwd on the path),
    no bytecode writes (-B), the pipe descriptors and the limits it applies before reading the program."""
    return [iso.python or sys.executable, "-I", "-B", *(entry or ["-m", CHILD_MODULE]),
            "--down", str(down), "--up", str(up), "--as", str(iso.memory_mb * 1024 * 1024),
            "--cpu", str(cpu_limit(iso, limits)), "--nofile", str(iso.open_files), "--fsize", str(iso.file_size),
            "--filter", str(int(iso.syscall_filter))]


def cpu_limit(iso: Isolation, limits: Limits) -> int:
    """RLIMIT_CPU of the worker in whole seconds: a backstop, by default set so that the wall-clock
    kill at max_seconds + grace_seconds comes first (the worker computes on one thread at a time)."""
    cpu = iso.cpu_seconds if iso.cpu_seconds is not None else limits.max_seconds + 2 * iso.grace_seconds + 1
    return max(1, int(cpu + 0.999))


def _foreign(exc: Exception, tool: str) -> ToolError:
    """A non-vistrace tool failure, worded as the interpreter words it in-process."""
    err = ToolError(f"{tool} failed: {type(exc).__name__}: {exc}")
    err.__cause__ = exc
    return err


# ------------------------------------------------------------------------------------- parent
class Worker:
    """A started worker process: ``down`` (write) and ``up`` (read) pipe ends, ``err`` (its stderr),
    its scratch working directory.  ``entry`` replaces ``-m vistrace.sandbox.isolate_child``."""

    def __init__(self, iso: Isolation, limits: Limits, entry: list[str] | None = None):
        self.scratch = tempfile.mkdtemp(prefix="vistrace-isolate-")
        down_r, self.down = os.pipe()
        self.up, up_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                child_command(iso, limits, down_r, up_w, entry), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, cwd=self.scratch, env=child_environment(), close_fds=True,
                pass_fds=(down_r, up_w), start_new_session=True)
        except OSError as exc:
            for fd in (self.down, self.up):
                os.close(fd)
            shutil.rmtree(self.scratch, ignore_errors=True)
            raise IsolationError(f"the isolated worker could not start: {exc}", reason="start",
                                 hint="check Isolation.python (default: this Python)") from None
        finally:
            os.close(down_r)
            os.close(up_w)
        self.err = self.proc.stderr.fileno()

    def kill(self) -> None:
        """Kill the worker (its whole process group: it runs in its own session) and reap it."""
        p = self.proc
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            p.kill()
        p.wait()

    def close(self) -> None:
        """Kill the worker if it still runs, close the pipes, remove the scratch directory."""
        self.kill()
        for fd in (self.down, self.up):
            try:
                os.close(fd)
            except OSError:
                pass
        self.proc.stderr.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def run_isolated(program, tools, caller, inputs: dict[str, Any], limits: Limits | None = None, parallel: int = 1,
                 isolation: Isolation | None = None):
    """Run a checked program in a worker process; returns the interpreter's :class:`Outcome` or raises
    the error the run ended with (the worker's error, :class:`LimitExceeded` when it was stopped at the
    time limit, :class:`IsolationError` when it died).  Steps go through ``caller`` in this process."""
    return _Parent(program, tools, caller, limits or Limits(), parallel, isolation or Isolation()).run(inputs)


class _Parent:
    def __init__(self, program, tools, caller, limits: Limits, parallel: int, iso: Isolation):
        self.program, self.tools, self.caller = program, tools, caller
        self.limits, self.parallel, self.iso = limits, max(1, int(parallel)), iso
        self.packer = Packer(issue=True, trusting=False)
        self.parser = FrameParser(iso.memory_mb * 1024 * 1024)
        self.signatures: dict[str, Any] = {}
        self.begun: set[int] = set()     # steps begun and not called yet
        self.n_begun = 0
        self.originals: dict[int, BaseException] = {}
        self.outbox: deque[memoryview] = deque()
        self.stderr = bytearray()
        self.replies: queue.SimpleQueue = queue.SimpleQueue()
        self.inflight = 0
        self.worker: Worker | None = None
        self.pool = None

    # -- start ----------------------------------------------------------------------------------
    def start_message(self, inputs: dict[str, Any]) -> tuple[dict, list[bytes]]:
        names = set(self.tools.names(include_aliases=True)) if hasattr(self.tools, "names") else set()
        names |= {n.func.id for n in ast.walk(self.program.tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        records, presets = [], {}
        for name in sorted(names):
            sig = self.tools.signature(name)
            if sig is None:
                continue
            self.signatures[name] = sig
            records.append({"name": sig.name, "tool": sig.tool, "renames": dict(sig.renames),
                            "params": [[p.name, p.required] for p in sig.params]})
            presets[sig.name] = dict(sig.presets)
        try:
            values, blobs = self.packer.pack([dict(inputs), presets])
        except (TypeError, ValueError) as exc:
            raise InputError(f"an input cannot be passed to the isolated worker: {exc}") from None
        source = self.program.source if "\n" in self.program.source else self.program.source + "\n"
        msg = {"op": "start", "program": source, "name": self.program.name, "limits": self.limits.to_json(),
               "parallel": self.parallel, "signatures": records, "values": values}
        return msg, blobs

    def run(self, inputs: dict[str, Any]):
        start = self.start_message(inputs)
        self.worker = Worker(self.iso, self.limits)
        self.proc = self.worker.proc
        self.fds = {"down": self.worker.down, "up": self.worker.up, "err": self.worker.err}
        try:
            for fd in self.fds.values():
                os.set_blocking(fd, False)
            if self.parallel > 1:
                from concurrent.futures import ThreadPoolExecutor

                self.pool = ThreadPoolExecutor(self.parallel, thread_name_prefix="vistrace-isolated-call")
                self.wake_r, self.wake_w = os.pipe()
                os.set_blocking(self.wake_r, False)
            self.send(*start)
            return self.loop()
        finally:
            self.worker.kill()
            if self.pool is not None:
                self.pool.shutdown(wait=True)
                os.close(self.wake_r)
                os.close(self.wake_w)
            self.worker.close()

    def stop(self) -> None:
        self.worker.kill()

    # -- the loop -------------------------------------------------------------------------------
    def loop(self):
        sel = selectors.DefaultSelector()
        try:
            sel.register(self.fds["up"], selectors.EVENT_READ, "up")
            sel.register(self.fds["err"], selectors.EVENT_READ, "err")
            if self.pool is not None:
                sel.register(self.wake_r, selectors.EVENT_READ, "wake")
            writing = False
            self.deadline = time.monotonic() + self.limits.max_seconds + self.iso.grace_seconds
            while True:
                if self.outbox and not writing:
                    sel.register(self.fds["down"], selectors.EVENT_WRITE, "down")
                    writing = True
                elif not self.outbox and writing:
                    sel.unregister(self.fds["down"])
                    writing = False
                now = time.monotonic()
                if self.inflight == 0 and now >= self.deadline:
                    raise self.timed_out()
                timeout = None if self.inflight else self.deadline - now
                for key, _ in sel.select(timeout):
                    what = key.data
                    if what == "down":
                        self.flush()
                    elif what == "err":
                        if not self.read_stderr():
                            sel.unregister(self.fds["err"])
                    elif what == "wake":
                        self.collect_replies()
                    else:
                        try:
                            data = os.read(self.fds["up"], 1 << 20)
                        except BlockingIOError:
                            continue
                        if not data:
                            raise self.died()
                        self.parser.feed(data)
                        while (item := self.parser.next()) is not None:
                            done, result = self.handle(*item)
                            if done:
                                self.reap()
                                return result
        except (ProtocolError, LimitExceeded):
            self.stop()
            raise
        finally:
            sel.close()

    def send(self, msg: dict, blobs: list[bytes]) -> None:
        self.outbox.extend(memoryview(p) for p in frame_parts(msg, blobs))
        self.flush()

    def flush(self) -> None:
        while self.outbox:
            buf = self.outbox[0]
            try:
                n = os.write(self.fds["down"], buf)
            except BlockingIOError:
                return
            except (BrokenPipeError, ConnectionResetError):   # the worker is gone; its pipe's EOF says how
                self.outbox.clear()
                return
            if n == len(buf):
                self.outbox.popleft()
            else:
                self.outbox[0] = buf[n:]

    def read_stderr(self) -> bool:
        try:
            data = os.read(self.fds["err"], 65536)
        except BlockingIOError:
            return True
        self.stderr += data
        del self.stderr[:-16384]
        return bool(data)

    def reap(self) -> None:
        try:
            self.proc.wait(timeout=self.iso.grace_seconds)
        except subprocess.TimeoutExpired:
            self.stop()

    # -- messages -------------------------------------------------------------------------------
    def handle(self, msg: dict, blobs: list[bytes]) -> tuple[bool, Any]:
        op, rid = msg.get("op"), msg.get("id")
        if op == "begin":
            sig = self.signature(msg.get("name"))
            site = msg.get("site")
            if not (isinstance(site, list) and len(site) == 5 and all(x is None or type(x) is int for x in site[:3])
                    and isinstance(site[3], str) and (site[4] is None or isinstance(site[4], str))):
                raise ProtocolError("a call site is malformed")
            if self.n_begun >= self.limits.max_tool_calls:
                raise LimitExceeded("max_tool_calls", self.limits.max_tool_calls,
                                    f"the program made more than {self.limits.max_tool_calls} tool calls "
                                    "(limit max_tool_calls; stopped by the isolation boundary)")
            step = self.caller.begin(sig, CallSite(*site))
            self.begun.add(step)
            self.n_begun += 1
            self.send({"id": rid, "step": step}, [])
        elif op == "call":
            sig, step = self.signature(msg.get("name")), msg.get("step")
            if type(step) is not int or step not in self.begun:
                raise ProtocolError(f"a call for step {step!r}, which was not begun or was already called")
            self.begun.discard(step)
            args = self.packer.unpack(msg.get("args"), blobs)
            if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
                raise ProtocolError("a call's arguments are not a dict of names")
            if self.pool is None:
                self.send(*self.call(rid, step, sig, args))
                self.deadline = max(self.deadline, time.monotonic() + self.iso.grace_seconds)
            else:
                self.inflight += 1
                future = self.pool.submit(self.call, rid, step, sig, args)
                future.add_done_callback(self.posted)
        elif op == "done":
            return True, self.outcome(msg.get("outcome"), blobs)
        elif op == "error":
            raise error_from_record(msg.get("error"), self.originals)
        elif op == "internal":
            raise RuntimeProgramError(f"internal error: {str(msg.get('message'))[:2000]}")
        else:
            raise ProtocolError(f"unknown operation {op!r}")
        return False, None

    def signature(self, name: Any):
        sig = self.signatures.get(name) if isinstance(name, str) else None
        if sig is None:
            raise ProtocolError(f"a call of {name!r}, which is not a tool of this run")
        return sig

    def call(self, rid, step: int, sig, args: dict) -> tuple[dict, list[bytes]]:
        """Run one tool call here (through the real caller) and build the reply."""
        try:
            value = self.caller.call(step, sig, args)
        except Exception as exc:  # noqa: BLE001 - the worker raises it at the call, as in-process
            return self.error_reply(rid, exc if isinstance(exc, VistraceError) else _foreign(exc, sig.tool)), []
        try:
            tree, blobs = self.packer.pack(value)
        except (TypeError, ValueError) as exc:
            return self.error_reply(rid, ToolError(f"{sig.tool} returned a value the isolated worker cannot "
                                                   f"receive: {exc}")), []
        return {"id": rid, "value": tree}, blobs

    def error_reply(self, rid, exc: VistraceError) -> dict:
        token = len(self.originals) + 1
        self.originals[token] = exc
        return {"id": rid, "error": error_record(exc, token)}

    def posted(self, future) -> None:
        self.replies.put(future)
        os.write(self.wake_w, b"x")

    def collect_replies(self) -> None:
        try:
            os.read(self.wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                future = self.replies.get_nowait()
            except queue.Empty:
                return
            self.inflight -= 1
            self.deadline = max(self.deadline, time.monotonic() + self.iso.grace_seconds)
            self.send(*future.result())

    def outcome(self, rec: Any, blobs: list[bytes]):
        from .interpreter import ModuleResult, Outcome

        if not isinstance(rec, dict):
            raise ProtocolError("the outcome is not an object")
        value, modules = self.packer.unpack(rec.get("value"), blobs), []
        for m in rec.get("modules") or []:
            try:
                m = dict(m, value=self.packer.unpack(m.get("value"), blobs))
                modules.append(ModuleResult(**m))
            except (TypeError, AttributeError) as exc:
                raise ProtocolError(f"a module result is malformed ({exc})") from None
        printed = [str(p) for p in rec.get("printed") or []]
        return Outcome(value, str(rec.get("style", self.program.style)), modules, printed)

    # -- endings --------------------------------------------------------------------------------
    def timed_out(self) -> LimitExceeded:
        self.stop()
        s = self.limits.max_seconds
        return LimitExceeded("max_seconds", s, f"the program ran longer than {s:g} s (limit max_seconds); the isolated "
                             f"worker did not stop within {self.iso.grace_seconds:g} s more and was killed")

    def died(self) -> VistraceError:
        """The worker's pipe closed before it finished: say why (signal, exit code, its last words)."""
        try:
            self.proc.wait(timeout=self.iso.grace_seconds)
        except subprocess.TimeoutExpired:
            self.stop()
        os.set_blocking(self.fds["err"], True)
        while self.read_stderr():
            pass
        rc = self.proc.returncode
        tail = self.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
        said = f" (its last output: {' | '.join(tail)[-800:]})" if tail else ""
        if rc is not None and rc < 0:
            try:
                name = signal.Signals(-rc).name
            except ValueError:
                name = f"signal {-rc}"
            if -rc == signal.SIGXCPU:
                cpu = cpu_limit(self.iso, self.limits)
                return LimitExceeded("cpu_seconds", float(cpu), f"the isolated worker used more than {cpu} s of CPU "
                                     "time (isolation limit cpu_seconds) and was stopped by the kernel")
            if -rc == signal.SIGKILL:
                return IsolationError(f"the isolated worker was killed ({name}) — by the kernel (out of memory, or past "
                                      f"its CPU hard limit) or by another process{said}", reason="killed", returncode=rc)
            return IsolationError(f"the isolated worker crashed ({name}){said}", reason="crashed", returncode=rc,
                                  hint="the steps before the crash are in the trace")
        if rc == EXIT_NO_FILTER:
            return IsolationError(f"the isolated worker could not install its system-call filter{said}", reason="start",
                                  returncode=rc, hint="seccomp filters need Linux on x86_64 or arm64; where that is "
                                  "not possible, isolate={'syscall_filter': False} runs without one (rlimits only)")
        if rc == EXIT_MEMORY:
            return IsolationError(f"the isolated worker ran out of memory (limit memory_mb={self.iso.memory_mb})",
                                  reason="memory", returncode=rc, hint="raise Isolation(memory_mb=...)")
        return IsolationError(f"the isolated worker exited with status {rc} before it finished{said}",
                              reason="exited", returncode=rc)
