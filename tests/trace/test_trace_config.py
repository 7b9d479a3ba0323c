from __future__ import annotations

from pathlib import Path

from vistrace import config


def test_given_no_env_when_asking_home_then_it_is_under_the_user_cache(monkeypatch):
    for var in ("VISTRACE_HOME", "XDG_CACHE_HOME", "VISTRACE_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert config.home() == Path.home() / ".cache" / "vistrace"
    assert config.cache_dir() == Path.home() / ".cache" / "vistrace" / "cache" / "results"
    assert config.runs_dir() == Path.home() / ".cache" / "vistrace" / "runs"


def test_given_env_vars_when_asking_then_they_are_read_at_call_time(monkeypatch, tmp_path):
    monkeypatch.delenv("VISTRACE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("VISTRACE_HOME", raising=False)
    assert config.home() == tmp_path / "xdg" / "vistrace"
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "vh"))
    assert config.home() == tmp_path / "vh"
    assert config.cache_dir() == tmp_path / "vh" / "cache" / "results"
    monkeypatch.setenv("VISTRACE_CACHE_DIR", str(tmp_path / "c"))
    assert config.cache_dir() == tmp_path / "c"
    assert not (tmp_path / "vh").exists() and not (tmp_path / "c").exists()


def test_importing_the_trace_package_stays_light():
    import subprocess
    import sys

    code = ("import sys, vistrace.trace, vistrace.config; "
            "print(sorted(m for m in ('PIL', 'numpy', 'jinja2', 'rich') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
