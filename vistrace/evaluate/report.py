"""The evaluation report: ``report.html`` with the figures, the settings and every item, linked to its traces.

One self-contained file (inline CSS, no script, no network, everything escaped); overlays and the
per-run reports are linked by relative paths inside the output folder.
"""

from __future__ import annotations

import functools
from pathlib import Path

from vistrace.trace.report import safe_relpath

from .base import ItemResult

REPORT_FILE = "report.html"


@functools.lru_cache(maxsize=1)
def _env():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["number"] = _number
    return env


def _number(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _link(folder: str, path: str | None) -> str | None:
    if not path:
        return None
    rel = safe_relpath(f"{folder}/{path}" if folder else path)
    return rel


def write_report(out: Path, summary, results: list[ItemResult]) -> Path:
    """Write ``out/report.html`` for a finished evaluation."""
    rows = []
    field_names: list[str] = []
    for r in results:
        for k in r.fields:
            if k not in field_names:
                field_names.append(k)
    for r in results:
        rows.append({
            "id": r.id, "score": r.score, "error": r.error, "seconds": r.seconds,
            "fields": [r.fields.get(k, "") for k in field_names],
            "runs": [x for x in (_link(r.folder, f"{run}/report.html") for run in r.runs) if x],
            "modules": [{"module": m.module, "passed": m.passed, "sentence": m.sentence, "source": m.source,
                         "error": m.error, "skipped": m.skipped, "overlay": _link(r.folder, m.overlay)}
                        for m in r.modules],
        })
    html = _env().get_template("index.html.j2").render(summary=summary.to_json(), rows=rows, field_names=field_names)
    path = out / REPORT_FILE
    path.write_text(html, encoding="utf-8")
    return path
