"""A seccomp filter for the isolated worker: no new processes, no sockets, no namespaces, no tracing.

The worker (``isolate_child``) installs it after its resource limits and before it reads the
program, so even code that escaped the interpreter cannot start a program, open a network
connection, join or make a namespace, mount, trace another process, or read another process's
memory: those system calls fail with EPERM. Threads are still allowed (``clone`` with
``CLONE_THREAD``; ``clone3`` answers ENOSYS, so the C library falls back to ``clone``), and so is
everything else the worker needs (reading its pipes, allocating memory).

The filter is classic BPF over ``struct seccomp_data`` (Linux's ``Documentation/userspace-api/seccomp_filter.rst``),
installed with ``prctl(PR_SET_NO_NEW_PRIVS)`` and ``prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)``; system
call numbers are the kernel's for x86_64 (``arch/x86/entry/syscalls/syscall_64.tbl``) and arm64
(the generic ``include/uapi/asm-generic/unistd.h``). Other architectures get
:class:`FilterUnavailable` — isolation then refuses to start unless the filter is turned off.
"""

from __future__ import annotations

import ctypes
import errno
import platform
import struct

# BPF instruction classes and fields
_LD_W_ABS = 0x00 | 0x00 | 0x20
_JEQ_K = 0x05 | 0x10 | 0x00
_JGE_K = 0x05 | 0x30 | 0x00
_JSET_K = 0x05 | 0x40 | 0x00
_RET_K = 0x06 | 0x00

_RET_ALLOW = 0x7FFF0000
_RET_KILL_PROCESS = 0x80000000
_RET_ERRNO = 0x00050000

_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
_CLONE_THREAD = 0x00010000
_X32_SYSCALL_BIT = 0x40000000

# offsets in struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]
_NR, _ARCH, _ARG0_LOW = 0, 4, 16

# what the worker may never do, by architecture: (audit arch, {name: number}, clone, clone3)
_DENIED_NAMES = ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "execve", "execveat",
                 "fork", "vfork", "ptrace", "mount", "umount2", "unshare", "setns", "bpf", "perf_event_open",
                 "process_vm_readv", "process_vm_writev", "keyctl", "io_uring_setup", "pivot_root", "chroot")
_TABLES = {
    "x86_64": (0xC000003E, {"socket": 41, "socketpair": 53, "connect": 42, "bind": 49, "listen": 50, "accept": 43,
                            "accept4": 288, "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "ptrace": 101,
                            "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "bpf": 321,
                            "perf_event_open": 298, "process_vm_readv": 310, "process_vm_writev": 311,
                            "keyctl": 250, "io_uring_setup": 425, "pivot_root": 155, "chroot": 161}, 56, 435),
    "aarch64": (0xC00000B7, {"socket": 198, "socketpair": 199, "connect": 203, "bind": 200, "listen": 201,
                             "accept": 202, "accept4": 242, "execve": 221, "execveat": 281, "ptrace": 117,
                             "mount": 40, "umount2": 39, "unshare": 97, "setns": 268, "bpf": 280,
                             "perf_event_open": 241, "process_vm_readv": 270, "process_vm_writev": 271,
                             "keyctl": 219, "io_uring_setup": 425, "pivot_root": 41, "chroot": 51}, 220, 435),
}


class FilterUnavailable(OSError):
    """The filter cannot be installed here (another architecture, or the kernel refused it)."""


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes:
    """The filter's BPF instructions for ``machine`` (default: this one), as ``struct sock_filter`` bytes."""
    machine = machine or platform.machine()
    if machine not in _TABLES:
        raise FilterUnavailable(f"no system-call table for {machine!r} (known: {', '.join(_TABLES)})")
    arch, numbers, clone, clone3 = _TABLES[machine]
    eperm = _RET_ERRNO | errno.EPERM
    out = [_insn(_LD_W_ABS, _ARCH),
           _insn(_JEQ_K, arch, jt=1, jf=0),   # a system call of another ABI: the process is killed
           _insn(_RET_K, _RET_KILL_PROCESS),
           _insn(_LD_W_ABS, _NR)]
    if machine == "x86_64":  # the x32 ABI reuses the numbers with this bit set
        out += [_insn(_JGE_K, _X32_SYSCALL_BIT, jt=0, jf=1), _insn(_RET_K, eperm)]
    for name in _DENIED_NAMES:
        if name in numbers:
            out += [_insn(_JEQ_K, numbers[name], jt=0, jf=1), _insn(_RET_K, eperm)]
    out += [_insn(_JEQ_K, clone3, jt=0, jf=1), _insn(_RET_K, _RET_ERRNO | errno.ENOSYS)]
    # clone: threads only (the last check: it loads the flags over the system call number)
    out += [_insn(_JEQ_K, clone, jt=0, jf=4),
            _insn(_LD_W_ABS, _ARG0_LOW),
            _insn(_JSET_K, _CLONE_THREAD, jt=0, jf=1),
            _insn(_RET_K, _RET_ALLOW),
            _insn(_RET_K, eperm),
            _insn(_RET_K, _RET_ALLOW)]
    return b"".join(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install() -> None:
    """Install the filter on this process (and its threads to come); irreversible."""
    code = program()
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(code, len(code))
    prog = _SockFprog(len(code) // 8, ctypes.cast(buf, ctypes.c_void_p))
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise FilterUnavailable(err, f"prctl(PR_SET_NO_NEW_PRIVS) failed: {errno.errorcode.get(err, err)}")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise FilterUnavailable(err, f"prctl(PR_SET_SECCOMP) failed: {errno.errorcode.get(err, err)}")
