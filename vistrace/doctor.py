"""``vistrace doctor``: every tool and backend, available or not, why, and the exact fix."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any


def _size(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def diagnose(registry=None) -> dict[str, Any]:
    """A JSON-ready report: tools with their backends, model files, device, caches."""
    from vistrace import __version__
    from vistrace.config import cache_dir, device, home, models_dir
    from vistrace.settings import config_file
    from vistrace.tools import default_registry
    from vistrace.tools.adapters.base import AdapterBackend, hf_cache_dir
    from vistrace.tools.models import known_models, status

    reg = registry or default_registry()
    tools = []
    for t in sorted(reg.tools(), key=lambda t: (t.category, t.name)):
        entry: dict[str, Any] = {"tool": t.name, "category": t.category, "expert": t.expert, "backends": []}
        if t.expert:
            for b in sorted(t.backends, key=lambda b: -b.priority):
                a = b.availability()
                row = {"backend": b.name, "model": b.model, "version": b.version,
                       "available": a.ok, "reason": a.reason, "fix": a.fix}
                if isinstance(b, AdapterBackend):
                    s = b.settings()
                    row["settings"] = {"table": f"[backends.{s.backend}]",
                                       "values": {k: {"value": v, "from": s.where(k)} for k, v in s.values.items()}}
                entry["backends"].append(row)
            entry["available"] = any(b["available"] for b in entry["backends"])
            if not entry["backends"]:
                entry["reason"] = "no backend installed for this tool"
                entry["fix"] = "install a plugin that provides one (entry point group 'vistrace.tools')"
        else:
            entry["available"] = True
        tools.append(entry)
    models = []
    for name, spec in sorted(known_models().items()):
        ok, reason = status(name)
        models.append({"name": name, "package": spec.source, "path": str(spec.path()),
                       "present": ok, "reason": reason, "fix": None if ok else f"{spec.fetch_command}",
                       "optional": not spec.default,
                       "about": spec.about, "license": spec.license})
    try:
        dev = device()
    except Exception as exc:  # noqa: BLE001 - a broken torch install is reported, not raised
        dev = f"unknown ({type(exc).__name__}: {exc})"
    return {
        "vistrace": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "device": dev, "home": str(home()),
        "settings_file": str(config_file()) if config_file() else None, "hf_cache": str(hf_cache_dir()),
        "models_dir": {"path": str(models_dir()), "bytes": _size(models_dir())},
        "result_cache": {"path": str(cache_dir()), "bytes": _size(cache_dir())},
        "tools": tools, "models": models,
    }


def render(report: dict[str, Any], console) -> None:
    from rich.table import Table

    console.print(f"vistrace {report['vistrace']} · Python {report['python']} · device [bold]{report['device']}[/]")
    console.print(f"home {report['home']}")
    console.print(f"settings {report['settings_file'] or 'none (./vistrace.toml or $VISTRACE_HOME/vistrace.toml)'}"
                  f" · Hugging Face cache {report['hf_cache']}")
    console.print(f"models {report['models_dir']['path']} ({report['models_dir']['bytes'] / 2**20:.1f} MB) · "
                  f"result cache {report['result_cache']['path']} ({report['result_cache']['bytes'] / 2**20:.1f} MB)")
    table = Table(title="tools and backends")
    for col in ("tool", "backend", "status", "reason / fix"):
        table.add_column(col, overflow="fold")
    for t in report["tools"]:
        if not t["expert"]:
            table.add_row(t["tool"], "builtin", "[green]ok[/]", "")
            continue
        if not t["backends"]:
            table.add_row(t["tool"], "—", "[red]missing[/]", f"{t['reason']} — {t['fix']}")
        for b in t["backends"]:
            state = "[green]ok[/]" if b["available"] else "[red]unavailable[/]"
            detail = b["reason"] if b["available"] else f"{b['reason']} — fix: {b['fix']}"
            if b.get("settings", {}).get("values"):
                detail += " · " + ", ".join(f"{k}={v['value']!r} ({v['from']})" for k, v in b["settings"]["values"].items())
            table.add_row(t["tool"], f"{b['backend']} ({b['model']})", state, detail)
    console.print(table)
    mt = Table(title="model files")
    for col in ("model", "package", "status", "fix"):
        mt.add_column(col, overflow="fold")
    for m in report["models"]:
        state = "[green]present[/]" if m["present"] else "[yellow]optional, not fetched[/]" if m.get("optional") \
            else "[red]missing[/]"
        mt.add_row(m["name"], m["package"], state, m["fix"] or "")
    console.print(mt)
