"""TEST HELPER — never used by product code.

Started by tests/sandbox/test_isolate.py through the real worker launch (``isolate.Worker`` with this
file as the entry instead of ``-m vistrace.sandbox.isolate_child``): it parses the same arguments and
applies the same limits as the worker (``apply_rlimits``), then reports what a program's process sees
— environment, working directory, open descriptors, stdin, resource limits, interpreter flags, and
what happens when it writes a file — as one frame on its pipe to the parent.
"""

import os
import resource
import sys

from vistrace.sandbox.isolate_child import Channel, apply_rlimits, parse_args

opts = parse_args(sys.argv[1:])
apply_rlimits(opts)
if opts["filter"]:
    from vistrace.sandbox import syscalls

    syscalls.install()


def attempt(fn) -> str:
    try:
        fn()
    except OSError as exc:
        return f"{type(exc).__name__}: errno {exc.errno}"
    return "ok"


def _thread() -> None:
    import threading

    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()


def _process() -> None:
    import subprocess

    subprocess.run(["/bin/true"], check=False)


def _socket() -> None:
    import socket

    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()


fds = [int(f) for f in os.listdir("/proc/self/fd")]
fds = sorted(f for f in fds if os.path.exists(f"/proc/self/fd/{f}"))   # not the listing's own descriptor
try:
    with open("probe.txt", "w") as f:
        f.write("x" * 10)
    write = "ok"
except OSError as exc:
    write = f"{type(exc).__name__}: errno {exc.errno}"
report = {
    "op": "report",
    "environ": dict(os.environ),
    "cwd": os.getcwd(),
    "fds": fds,
    "stdin": os.readlink("/proc/self/fd/0"),
    "rlimits": {n: list(resource.getrlimit(getattr(resource, f"RLIMIT_{n}"))) for n in ("AS", "CPU", "NOFILE",
                                                                                         "FSIZE", "CORE")},
    "flags": {"isolated": sys.flags.isolated, "dont_write_bytecode": sys.flags.dont_write_bytecode},
    "path_has_cwd": any(p in ("", ".", os.getcwd()) for p in sys.path),
    "write": write,
    "thread": attempt(_thread),
    "fork": attempt(os.fork) if opts["filter"] else "not tried (no filter)",
    "process": attempt(_process) if opts["filter"] else "not tried (no filter)",
    "socket": attempt(_socket),
}
Channel(opts["down"], opts["up"]).send(report)
