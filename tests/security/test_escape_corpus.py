"""Given the escape corpus (tests/security/attacks/*.vp: object-graph walks, frames, smuggled builtins,
imports, syntax outside the language, unicode look-alikes, run-time names, shadowing, the published
LocalPythonExecutor escapes, resource exhaustion), when each attack is checked and — if it passes —
run with modest limits through the real interpreter and tool dispatcher, then it is rejected by the
checker or stopped by a vistrace error, exactly as its ``# expect:`` header says; never a plain
Python exception, never success; and no file is written, no canary environment variable is read, no
process is started and memory stays bounded.

Rerun one category:  .venv/bin/python -m pytest -q tests/security/test_escape_corpus.py -k resources
"""

from __future__ import annotations

import builtins
import os
import re
import resource
import secrets
import subprocess
from pathlib import Path

import pytest

from vistrace import errors as vistrace_errors
from vistrace.errors import VistraceError
from vistrace.sandbox import Limits

from .conftest import attempt, host_inputs

ATTACKS = Path(__file__).parent / "attacks"
FILES = sorted(ATTACKS.glob("*.vp"))
CATEGORIES = {
    "object-graph", "frames", "smuggled-builtins", "imports", "syntax", "unicode", "dynamic-names", "shadowing",
    "published", "resources",
}
CANARY_PATH = Path("/tmp/vistrace-escape-canary")
CANARY_VAR = "VISTRACE_CANARY_SECRET"
# Modest limits: generous enough for the attacks to reach the operation they target (a 150000-deep
# tuple takes 150000 iterations), small enough that every attack ends within a few seconds.
LIMITS = Limits(max_seconds=5, max_steps=400_000, max_loop_iterations=400_000, max_tool_calls=200,
                max_memory=64_000_000)
MAX_RSS_GROWTH_MB = 500
_HEADER = re.compile(r"^#\s*(technique|category|expect|error|inputs):\s*(.+?)\s*$")


def header(path: Path) -> dict[str, str]:
    """The machine-readable comment block at the top of an attack file."""
    meta: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _HEADER.match(line)
        if not m:
            break
        meta[m.group(1)] = m.group(2)
    return meta


class Watch:
    """What an attack may not do to the host: start processes, open files for writing, read the canary."""

    def __init__(self):
        self.processes: list[str] = []
        self.writes: list[str] = []
        self.env_reads: list[str] = []


@pytest.fixture()
def watch(monkeypatch, tmp_path):
    w = Watch()

    def refuse(name):
        def blocked(*args, **kwargs):
            w.processes.append(f"{name}{args[:2]!r}")
            raise PermissionError(f"security test: {name} is blocked")
        return blocked

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("subprocess.Popen"))
    for name in ("system", "popen", "fork", "forkpty", "posix_spawn", "posix_spawnp", "execv", "execve",
                 "execvp", "execvpe", "spawnv", "spawnve"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, refuse(f"os.{name}"))
    real_open = builtins.open

    def recording_open(file, mode="r", *args, **kwargs):
        if any(c in str(mode) for c in "wax+"):
            w.writes.append(f"{file!r} ({mode})")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", recording_open)
    w.token = secrets.token_hex(16)
    monkeypatch.setenv(CANARY_VAR, w.token)  # before the recording starts: setenv reads the old value
    real_getitem = os._Environ.__getitem__

    def recording_getitem(self, key):
        if key == CANARY_VAR:
            w.env_reads.append(key)
        return real_getitem(self, key)

    monkeypatch.setattr(os._Environ, "__getitem__", recording_getitem)
    monkeypatch.chdir(tmp_path)
    w.cwd = tmp_path
    return w


_RSS: dict[str, int] = {}


def _rss_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # Linux: KiB


def test_corpus_is_large_and_covers_every_category():
    # given the attack files, when their headers are read
    metas = {p.name: header(p) for p in FILES}
    # then there are at least 150, each with a technique, a known category and an expected outcome
    assert len(FILES) >= 150, len(FILES)
    for name, meta in metas.items():
        assert re.match(r"^\d{3}_[A-Za-z0-9_]+\.vp$", name), name
        assert meta.get("technique"), name
        assert meta.get("category") in CATEGORIES, (name, meta.get("category"))
        assert meta.get("expect") in ("check", "run"), (name, meta.get("expect"))
        if "error" in meta:
            assert issubclass(getattr(vistrace_errors, meta["error"]), VistraceError), name
    # and every category has several attacks
    counts = {c: sum(m["category"] == c for m in metas.values()) for c in CATEGORIES}
    assert all(n >= 5 for n in counts.values()), counts


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_attack_is_stopped(path, watch, security_registry, probe_image):
    meta = header(path)
    source = path.read_text(encoding="utf-8")
    inputs = host_inputs(probe_image)
    wanted = {n.strip() for n in meta.get("inputs", "").split(",") if n.strip()}
    inputs = {k: v for k, v in inputs.items() if k in ("image", "IMAGE", "img") or k in wanted}
    assert not CANARY_PATH.exists(), "a canary from an earlier run is still there; remove it"
    rss_before = _rss_mb()
    _RSS.setdefault("start", rss_before)

    # when it is checked and, if it passes, run with modest limits
    result = attempt(source, security_registry, LIMITS, inputs)

    # then it never escapes as a Python exception and never succeeds
    assert result.stage != "internal", f"internal exception: {type(result.error).__name__}: {result.error}"
    assert result.stage != "ok", f"the attack ran to the end: value={result.value!r:.200}"
    # and it stops where its header says, with a located vistrace error
    assert result.stage == meta["expect"], (result.stage, result.error, [str(p) for p in result.problems][:3])
    if result.stage == "check":
        assert result.problems, "rejected without a problem to show"
        assert all(p.line >= 1 and p.col >= 0 for p in result.problems)
    else:
        assert isinstance(result.error, VistraceError)
        assert result.error.where.line is not None or type(result.error).__name__ == "InputError", result.error
    if "error" in meta:
        expected = getattr(vistrace_errors, meta["error"])
        got = result.error if result.error is not None else None
        if result.stage == "run":
            assert isinstance(got, expected), (type(got).__name__, str(got))
    # and the host was not touched
    assert not watch.processes, watch.processes
    assert not watch.writes, watch.writes
    assert not watch.env_reads, "the canary environment variable was read"
    assert not any(watch.token in text for text in result.texts()), "the canary value leaked into the output"
    assert list(watch.cwd.iterdir()) == [], "the attack wrote into the working directory"
    assert not CANARY_PATH.exists(), f"{CANARY_PATH} was created"
    # and memory stayed bounded
    assert _rss_mb() - rss_before < MAX_RSS_GROWTH_MB
    _RSS["end"] = _rss_mb()


def test_memory_stayed_bounded_over_the_corpus():
    # given the corpus ran before this test (file order), then the peak RSS grew by less than the bound
    if "start" not in _RSS:
        pytest.skip("run together with test_attack_is_stopped")
    assert _RSS["end"] - _RSS["start"] < MAX_RSS_GROWTH_MB, _RSS


def test_value_fields_cannot_be_changed_through_their_containers(security_registry):
    # given a value whose public field is a dict (Keypoints.points), handed to a program as an input
    from vistrace.values import Keypoints

    kp = Keypoints({"nose": (1, 2, 0.9)}, score=0.5)
    source = ("def main(kp: Keypoints) -> dict:\n    p = kp.points\n    p['nose'] = (0, 0, 0)\n"
              "    p.update({'evil': (1, 1, 1)})\n    return p")
    # when the program changes the dict it read
    result = attempt(source, security_registry, LIMITS, {"kp": kp})
    # then it changed its own copy: the value (and its hash, used by caches) is as it was
    assert result.stage == "ok", result.error
    assert set(result.value) == {"nose", "evil"}
    assert kp.points == {"nose": (1.0, 2.0, 0.9)}


@pytest.mark.parametrize("name", ["../../evil", "/tmp/vistrace-abs", "..", ".hidden", "a\\..\\b"])
def test_an_exported_file_never_lands_outside_the_run_folder(tmp_path, name):
    """Given a MeshFile whose name walks out of the folder (made outside export_mesh, which refuses such
    names), when the run folder is saved, then the file is written under exports/ with a safe name."""
    from vistrace.trace.artifacts import _save_file
    from vistrace.values.geometry import MeshFile

    class Step:
        id, artifacts = 7, []

    run_dir = tmp_path / "run"
    _save_file(run_dir, Step, MeshFile(b"ply", "ply", name), set())
    assert Step.artifacts == ["exports/export_step007.ply"]
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == \
        ["run/exports/export_step007.ply"]
