"""Worker-process isolation (the OS boundary): a program runs in a child process with resource limits,
an empty environment and a scratch directory, while its tool calls and its trace stay in this process.

Given/when/then in each docstring.  The worker is the real one (``python -I -B -m
vistrace.sandbox.isolate_child``); the probe of the child's environment and limits is a test-only
entry (tests/sandbox/isolate_probe.py) started through the same launch code.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vistrace
from vistrace.errors import IsolationError, LimitExceeded, ToolError
from vistrace.sandbox import Limits
from vistrace.sandbox import isolate, isolate_child
from vistrace.sandbox.isolate import Isolation, Worker, child_command, child_environment
from vistrace.sandbox.isolate_child import FrameParser, Packer, ProtocolError, error_from_record, error_record
from vistrace.tools import tool

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
PROBE = Path(__file__).with_name("isolate_probe.py")


@tool()
def crash_worker(sig: int) -> int:
    """Send a signal to this process's isolated worker (a test double for a crash).

    Args:
        sig: the signal number
    """
    for pid in _workers():
        os.kill(pid, sig)
    return sig


def _workers() -> list[int]:
    """Children of this process that run the isolated worker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"isolate_child" in cmd:
            found.append(int(entry))
    return found


@pytest.fixture()
def reg(registry):
    registry.add(crash_worker)
    return registry


def _run(program, registry, **kw):
    return vistrace.run(program, registry=registry, cache=False, **kw)


def _probe(iso: Isolation, limits: Limits | None = None) -> tuple[dict, Path]:
    """Start the probe through the worker launch; returns its report and the scratch directory."""
    w = Worker(iso, limits or Limits(), entry=[str(PROBE)])
    try:
        parser, sel = FrameParser(1 << 24), selectors.DefaultSelector()
        sel.register(w.up, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        while (item := parser.next()) is None:
            assert sel.select(max(0.0, deadline - time.monotonic())), "the probe did not report"
            data = os.read(w.up, 1 << 16)
            assert data, "the probe exited without a report: " + os.read(w.err, 4096).decode(errors="replace")
            parser.feed(data)
        sel.close()
        return item[0], Path(w.scratch)
    finally:
        w.close()


# ------------------------------------------------------------------------------------ same results
def test_isolated_run_equals_in_process_with_real_tools():
    """Given a program using real tools (OCR, crop, zoom, box) on a real image,
    when it runs in-process and isolated,
    then the value, the printed lines and the whole comparable trace are identical."""
    from vistrace.tools import default_registry

    program = (
        "def main(image: Image) -> str:\n"
        "    \"\"\"Read the page and zoom on its corner.\"\"\"\n"
        "    lines = ocr(image)\n"
        "    corner = crop(image, box(0, 0, 120, 60))\n"
        "    big = zoom(image, box(0, 0, 120, 60))\n"
        "    words = [w for w in lines.text.split() if len(w) > 3]\n"
        "    print(len(words), corner.width, big.width, big.region())\n"
        "    return lines.text\n")
    reg = default_registry()
    a = _run(program, reg, image=IMAGES / "page.png")
    b = _run(program, reg, image=IMAGES / "page.png", isolate=True)
    assert a.ok and b.ok, (a.error, b.error)
    assert "segmentation" in b.value and b.value == a.value and b.printed == a.printed
    assert b.trace.comparable() == a.trace.comparable()
    assert [s.backend for s in b.trace.steps] == [s.backend for s in a.trace.steps]
    # and the trace says which run was isolated, with what limits
    assert a.trace.isolation is None and b.trace.isolation["syscall_filter"] is True


def test_isolated_visprog_aliases_and_tool_errors_match_in_process(reg):
    """Given a VisProg program (aliases with renamed arguments) and a program whose tool raises,
    when each runs in-process and isolated,
    then values, error class, located error text and traces are the same."""
    visprog = "X=ADD(left=2,right=3)\nY=ADD(left=X,right=X)\nFINAL_RESULT=RESULT(var=Y)\n"
    a, b = _run(visprog, reg), _run(visprog, reg, isolate=True)
    assert a.value == b.value == 10 and b.trace.comparable() == a.trace.comparable()
    failing = "a = add(1, 2)\nb = boom('no luck')\nresult = a\n"
    a, b = _run(failing, reg), _run(failing, reg, isolate=True)
    assert isinstance(b.error, ToolError) and type(b.error) is type(a.error)
    assert str(b.error) == str(a.error) and "line 2:5, step 2, tool boom" in str(b.error)
    assert b.trace.comparable() == a.trace.comparable()


def test_isolated_values_of_every_kind_round_trip(reg):
    """Given a program returning sets, tuples, dicts with int keys, ranges and nested lists,
    when isolated, then the value equals the in-process one."""
    program = "result = [{1: 'a', 2: (3, 4)}, {5, 6}, range(2, 9, 3), [[1.5, None, True]], add(1, 1)]\n"
    a, b = _run(program, reg), _run(program, reg, isolate=True)
    assert b.ok and b.value == a.value and type(b.value[1]) is set and isinstance(b.value[2], range)


def test_isolated_parallel_calls_overlap(reg):
    """Given three independent slow tool calls and parallel=3,
    when isolated, then they overlap (well under 3x one call) and the trace keeps program order."""
    program = "a = slow_double(1, 0.6)\nb = slow_double(2, 0.6)\nc = slow_double(3, 0.6)\nresult = a + b + c\n"
    t = time.perf_counter()
    run = _run(program, reg, parallel=3, isolate=True)
    took = time.perf_counter() - t
    assert run.ok and run.value == 12 and took < 1.6, took
    assert [s.line for s in run.trace.steps] == [1, 2, 3]


# ------------------------------------------------------------------------------------ the OS boundary
def test_child_environment_is_fixed_and_never_inherits(monkeypatch):
    """Given a canary variable in the parent's environment,
    when the worker's environment and command are built,
    then the canary is absent, only fixed thread settings are there, and Python runs isolated (-I -B)."""
    monkeypatch.setenv("VISTRACE_CANARY", "secret-token")
    env = child_environment()
    assert "VISTRACE_CANARY" not in env and "PATH" not in env and "HOME" not in env
    assert set(env) == {"OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LC_CTYPE"}
    cmd = child_command(Isolation(), Limits(), 7, 8)
    assert cmd[1:5] == ["-I", "-B", "-m", "vistrace.sandbox.isolate_child"]
    assert cmd[cmd.index("--down") + 1] == "7" and cmd[cmd.index("--up") + 1] == "8"


def test_the_child_sees_no_environment_no_handles_and_its_limits(monkeypatch):
    """Given a canary in the parent's environment and custom isolation limits,
    when the probe is started through the worker launch,
    then it sees exactly the fixed environment, a scratch cwd (removed afterwards), stdin /dev/null,
    only stdin/stdout/stderr and its two pipes, its rlimits, and it cannot write files."""
    monkeypatch.setenv("VISTRACE_CANARY", "secret-token")
    iso = Isolation(memory_mb=512, open_files=32, file_size=0, grace_seconds=1.0)
    report, scratch = _probe(iso, Limits(max_seconds=5))
    assert report["environ"] == child_environment()
    assert report["cwd"] == str(scratch) and scratch.name.startswith("vistrace-isolate-") and not scratch.exists()
    assert report["stdin"] == "/dev/null" and len(report["fds"]) == 5 and report["fds"][:3] == [0, 1, 2]
    mib = 1024 * 1024
    assert report["rlimits"] == {"AS": [512 * mib, 512 * mib], "CPU": [8, 9], "NOFILE": [32, 32],
                                 "FSIZE": [0, 0], "CORE": [0, 0]}
    assert report["flags"] == {"isolated": 1, "dont_write_bytecode": 1} and not report["path_has_cwd"]
    assert report["write"] == "OSError: errno 27"   # EFBIG: RLIMIT_FSIZE=0 (SIGXFSZ is ignored by Python)
    # the system-call filter: threads run, but no process starts and no socket opens (EPERM)
    assert report["thread"] == "ok"
    assert report["fork"] == report["process"] == report["socket"] == "PermissionError: errno 1"


def test_without_the_filter_only_the_rlimits_apply():
    """Given isolation with syscall_filter=False, when the probe runs, then a socket opens (the filter
    is what refuses it) and the command line says the filter is off."""
    report, _ = _probe(Isolation(syscall_filter=False), Limits(max_seconds=5))
    assert report["socket"] == "ok" and report["thread"] == "ok"
    cmd = child_command(Isolation(syscall_filter=False), Limits(), 7, 8)
    assert cmd[cmd.index("--filter") + 1] == "0"


# ------------------------------------------------------------------------------------ limits and deaths
def test_stuck_child_is_killed_at_the_time_limit_and_the_trace_is_kept(reg, tmp_path):
    """Given a program whose one builtin call runs for ages (a generous max_collection lets
    sum(range(10**15)) start; the interpreter cannot interrupt it),
    when isolated with max_seconds=1 and a 1 s grace,
    then the worker is killed after about 2 s, the run ends with LimitExceeded naming max_seconds,
    and the step done before is in the trace and the saved run folder."""
    program = "a = add(1, 2)\nn = sum(range(10 ** 15))\nresult = a + n\n"
    t = time.perf_counter()
    run = _run(program, reg, limits=Limits(max_seconds=1, max_collection=10 ** 16),
               isolate=Isolation(grace_seconds=1.0))
    took = time.perf_counter() - t
    assert isinstance(run.error, LimitExceeded) and run.error.limit == "max_seconds", run.error
    assert "was killed" in str(run.error) and 1.5 < took < 10, took
    assert [(s.call, s.output) for s in run.trace.steps] == [("add", "3")]
    saved = json.loads((run.save(tmp_path / "r") / "trace.json").read_text())
    assert saved["steps"][0]["output"] == "3" and saved["error"]["type"] == "LimitExceeded"
    assert not _workers()


def test_the_childs_own_time_limit_is_located(reg):
    """Given a long loop under a short max_seconds, when isolated, then the worker stops itself with
    LimitExceeded located at the loop (line 2), as in-process."""
    program = "a = add(1, 2)\nfor i in range(10 ** 9):\n    a = a + 1\nresult = a\n"
    limits = Limits(max_seconds=0.5, max_loop_iterations=10 ** 10, max_steps=10 ** 10, max_collection=10 ** 10)
    run = _run(program, reg, limits=limits, isolate=True)
    assert isinstance(run.error, LimitExceeded) and run.error.limit == "max_seconds"
    assert run.error.where.line in (2, 3) and "was killed" not in str(run.error)


@pytest.mark.parametrize("sig, reason, text", [(signal.SIGSEGV, "crashed", "crashed (SIGSEGV)"),
                                               (signal.SIGKILL, "killed", "was killed (SIGKILL)")])
def test_a_dying_child_gives_an_isolation_error_and_keeps_the_trace(reg, sig, reason, text):
    """Given a tool that kills the worker with a signal while the worker waits for it,
    when the program runs isolated,
    then the run ends with IsolationError naming the signal (never a hang), and its steps are kept."""
    program = f"a = add(1, 2)\nb = crash_worker({int(sig)})\nresult = a + b\n"
    run = _run(program, reg, isolate=True)
    assert isinstance(run.error, IsolationError) and run.error.reason == reason, run.error
    assert text in str(run.error) and run.error.returncode == -int(sig)
    assert [s.call for s in run.trace.steps] == ["add", "crash_worker"] and run.trace.error.type == "IsolationError"


def test_memory_blow_up_is_bounded_by_rlimit_as(reg):
    """Given a program that builds gigabytes of strings within the interpreter's size limits,
    when isolated with memory_mb=300,
    then it stops quickly with a memory error that names the limit, and this process is unaffected."""
    program = "xs = []\nfor i in range(5000):\n    xs.append('x' * 900000 + str(i))\nresult = len(xs)\n"
    t = time.perf_counter()
    run = _run(program, reg, isolate=Isolation(memory_mb=300))
    assert isinstance(run.error, (LimitExceeded, IsolationError)), run.error
    assert "memory" in str(run.error) and "memory_mb=300" in str(run.error)
    assert time.perf_counter() - t < 30


# ------------------------------------------------------------------------------------ the protocol
def test_parent_trusts_nothing_the_child_says_about_values():
    """Given the parent's packer, when the child's messages forge a handle, issue a handle, or send
    pixels that do not match their size, then each is a ProtocolError; a real round trip keeps the
    parent's own objects and recomputes a child-made image's hash."""
    from vistrace.values import Box, Detections, Image, Mask

    parent, child = Packer(issue=True, trusting=False), Packer(issue=False, trusting=True)
    img = Image.open(IMAGES / "chelsea.jpg")
    import numpy as np

    sent = [img, Detections([Box(1, 2, 30, 40, label="cat", score=0.9)], "cat"), Mask(np.eye(4, dtype=bool))]
    got = child.unpack(*parent.pack(sent))
    assert got[0] == img and got[1] == sent[1] and (got[2].array == sent[2].array).all()
    back = parent.unpack(*child.pack([got[0], got[1], Box(0, 0, 5, 5)]))
    assert back[0] is img and back[1] is sent[1] and back[2] == Box(0, 0, 5, 5)
    with pytest.raises(ProtocolError, match="unknown value handle"):
        parent.unpack({"$h": 999}, [])
    with pytest.raises(ProtocolError, match="cannot issue value handles"):
        parent.unpack({"$v": {"$value": {"type": "Box"}}, "b": {}, "h": 5}, [])
    meta = {"mode": "RGB", "size": [10, 10], "source": "x", "sha256": "0" * 64, "offset": [0, 0], "scale": [1, 1],
            "root_size": [10, 10]}
    with pytest.raises(ProtocolError, match="pixels do not match"):
        parent.unpack({"$img": meta, "px": 0}, [b"\x00" * 10])
    made = parent.unpack({"$img": meta, "px": 0}, [b"\x00" * 300])
    assert made.sha256 != "0" * 64                     # the child's claim is not believed
    with pytest.raises(ProtocolError, match="larger than"):
        p = FrameParser(1000)
        p.feed(b"\x00\x00\x00\x02\x00\x00\x00\x01{}" + (10 ** 6).to_bytes(8, "big"))
        p.next()


def test_errors_cross_as_records_and_the_parents_own_error_comes_back():
    """Given a parent-side error sent with a token, when the child raises it and reports it back,
    then the parent gets its own object (class, hint and extras intact) with the child's location;
    without a token the most specific vistrace class is rebuilt."""
    from vistrace.errors import BackendUnavailable, Location

    original = BackendUnavailable("no detector", fix="pip install x", brief="none here")
    in_child = error_from_record(error_record(original, 1))
    assert type(in_child) is BackendUnavailable and in_child.fix == "pip install x"
    in_child.with_location(Location(3, 4, 2, "detect"))
    back = error_from_record(error_record(in_child, 1), {1: original})
    assert back is original and back.where == Location(3, 4, 2, "detect")
    rebuilt = error_from_record(error_record(LimitExceeded("max_steps", 10, "too many")))
    assert type(rebuilt) is LimitExceeded and rebuilt.limit == "max_steps" and rebuilt.value == 10
    assert type(error_from_record({"classes": ["NotAClass", "Exception"], "message": 5})).__name__ == \
        "RuntimeProgramError"


def test_no_pickle_crosses_the_pipe():
    """Given the isolation modules, then neither imports pickle (the parent never unpickles child data)."""
    for mod in (isolate, isolate_child):
        text = Path(mod.__file__).read_text()
        assert "import pickle" not in text and "pickle.loads" not in text and "multiprocessing" not in text


def test_isolation_settings_are_validated():
    """Given bad isolation settings, then InputError names them."""
    from vistrace.errors import InputError

    assert Isolation.of(True) == Isolation() and Isolation.of(False) is None
    assert Isolation.of({"memory_mb": 128}).memory_mb == 128
    for bad in ({"memory_mb": 0}, {"nope": 1}, "yes"):
        with pytest.raises(InputError):
            Isolation.of(bad)


# ------------------------------------------------------------------------------------ CLI and agent
def test_cli_run_isolate(tmp_path):
    """Given `vistrace run --isolate` on an example program, then it prints the same result as without,
    and a stuck program under --limit seconds=1 exits 1 with the time limit named."""
    from vistrace.cli import app

    runner = CliRunner()
    args = ["run", str(ROOT / "examples" / "visprog_halves.vp"), "--image", str(IMAGES / "astronaut.jpg"), "--no-cache"]
    plain = runner.invoke(app, args + ["--out", str(tmp_path / "a")], catch_exceptions=False)
    isolated = runner.invoke(app, args + ["--isolate", "--out", str(tmp_path / "b")], catch_exceptions=False)
    assert plain.exit_code == isolated.exit_code == 0, isolated.output
    assert "the right crop is at least as wide" in isolated.output
    assert plain.output.split("run folder")[0] == isolated.output.split("run folder")[0]
    stuck = tmp_path / "stuck.vp"
    stuck.write_text("n = sum(range(10 ** 15))\nresult = n\n")
    res = runner.invoke(app, ["run", str(stuck), "--isolate", "--limit", "seconds=1", "--limit", "collection=10000000000000000",
                              "--out", str(tmp_path / "c")], catch_exceptions=False)
    assert res.exit_code == 1 and "max_seconds" in res.output and (tmp_path / "c" / "trace.json").is_file()


@pytest.fixture()
def spy(monkeypatch):
    calls = []
    real = isolate.run_isolated

    def wrapper(*a, **kw):
        calls.append(a[-1])
        return real(*a, **kw)
    monkeypatch.setattr(isolate, "run_isolated", wrapper)
    return calls


def test_agent_programs_run_isolated_by_default(spy, monkeypatch, tmp_path):
    """Given the scripted LLM, when the agent answers with defaults, then its program ran in the
    isolated worker; with isolate=False it ran in-process; `vistrace ask` isolates unless --no-isolate."""
    from tests.agent.scripted_llm import ScriptedLLM
    from tests.agent.scripted_server import ScriptedServer
    from vistrace.cli import app
    from vistrace.tools import default_registry

    good = "b = box(0, 0, 50, 40)\nc = crop(image, b)\nresult = c.width\n"
    image = IMAGES / "chelsea.jpg"
    ans = vistrace.Agent(llm=ScriptedLLM([good]), registry=default_registry(), cache=False).ask(image, "How wide?")
    assert ans.value == 50 and len(spy) == 1 and isinstance(spy[0], Isolation)
    ans = vistrace.Agent(llm=ScriptedLLM([good]), registry=default_registry(), cache=False,
                         isolate=False).ask(image, "How wide?")
    assert ans.value == 50 and len(spy) == 1
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "home"))
    for flag, expected in ((None, 2), ("--no-isolate", 2), ("--isolate", 3)):
        with ScriptedServer([good]) as srv:
            args = ["ask", str(image), "How wide?", "--llm", srv.spec, "--no-cache", "--out", str(tmp_path / "r")]
            res = CliRunner().invoke(app, args + ([flag] if flag else []), catch_exceptions=False)
        assert res.exit_code == 0 and "answer: 50" in res.output, res.output
        assert len(spy) == expected, (flag, len(spy))


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_filter_is_built_for_each_known_architecture(machine):
    from vistrace.sandbox import syscalls

    code = syscalls.program(machine)
    assert len(code) % 8 == 0 and 40 < len(code) // 8 < 256   # struct sock_filter: 8 bytes; BPF's limit is 4096


def test_another_architecture_has_no_filter_and_says_so():
    from vistrace.sandbox import syscalls

    with pytest.raises(syscalls.FilterUnavailable, match="riscv64"):
        syscalls.program("riscv64")
