"""The main job of ``make demo``: run the example programs of a manifest and write their reports."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

from .errors import InputError, ProgramError


def _resolve(base: Path, value: Any) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return "@" + str((base / value[1:]).resolve())
    return value


def _missing_files(base: Path, entry: dict) -> list[Path]:
    paths = [base / entry["program"]] + [base / p for p in entry.get("images", {}).values()]
    paths += [base / v[1:] for v in entry.get("args", {}).values() if isinstance(v, str) and v.startswith("@")]
    return [p for p in paths if not p.exists()]


def run_examples(manifest: Path, out: Path, console) -> int:
    """Run every example; print one line each; write out/index.html. Returns the exit code."""
    from .api import parse_and_check, run as run_program
    from .inputs import load_value_file
    from .values import Image

    if not manifest.is_file():
        raise InputError(f"manifest not found: {manifest}", hint="run from the repository root")
    base = manifest.parent
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    rows, failures = [], 0
    for entry in entries:
        name = entry["name"]
        missing = _missing_files(base, entry)
        if missing:
            console.print(f"[yellow]skip[/] {name}: missing {missing[0]} (shared evaluation data lives in ../shared/data)",
                          markup=True)
            rows.append((name, "skipped", f"missing {missing[0]}", None))
            continue
        t0 = time.perf_counter()
        try:
            prog, _ = parse_and_check(base / entry["program"], name=name)
            inputs: dict[str, Any] = {k: Image.open(base / v) for k, v in entry.get("images", {}).items()}
            for k, v in entry.get("args", {}).items():
                inputs[k] = load_value_file(base / v[1:]) if isinstance(v, str) and v.startswith("@") else v
            result = run_program(prog.source, name=name, **inputs)
        except (ProgramError, InputError) as exc:
            failures += 1
            console.print(f"[red]FAIL[/] {name}: {exc}", markup=True)
            rows.append((name, "rejected", str(exc), None))
            continue
        run_dir = result.save(out / name)
        took = time.perf_counter() - t0
        steps = len(result.trace.steps)
        failed_steps = sum(1 for s in result.trace.steps if s.error)
        if result.ok:
            text = result.describe(limit=300)
            console.print(f"[green]ok[/]   {name}: {text}  [dim]({steps} steps, {failed_steps} failed, "
                          f"{took:.2f}s) {run_dir}/report.html[/]", markup=True)
            rows.append((name, "ok", text, run_dir))
        else:
            failures += 1
            console.print(f"[red]error[/] {name}: {result.error} [dim]{run_dir}/report.html[/]", markup=True)
            rows.append((name, "error", str(result.error), run_dir))
    _write_index(out, rows, entries)
    console.print(f"index: {out / 'index.html'}")
    return 1 if failures else 0


def _write_index(out: Path, rows, entries) -> None:
    about = {e["name"]: e.get("about", "") for e in entries}
    items = []
    for name, status, text, run_dir in rows:
        link = f'<a href="{html.escape(name)}/report.html">{html.escape(name)}</a>' if run_dir else html.escape(name)
        items.append(f"<tr><td>{link}</td><td>{html.escape(status)}</td><td>{html.escape(about.get(name, ''))}</td>"
                     f"<td><code>{html.escape(text)}</code></td></tr>")
    (out / "index.html").write_text(
        "<!doctype html><meta charset='utf-8'><title>vistrace demo</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border-bottom:1px solid #ddd;padding:.4em;"
        "vertical-align:top}code{white-space:pre-wrap}</style><h1>vistrace demo runs</h1>"
        "<table><tr><th>example</th><th>status</th><th>what it shows</th><th>result</th></tr>"
        + "".join(items) + "</table>", encoding="utf-8")
