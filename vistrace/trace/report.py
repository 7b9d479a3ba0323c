"""The run folder (``trace.json``, ``artifacts/``, ``inputs/``, ``report.html``) and the HTML report.

The report puts the program beside the pictures: each source line that produced steps links to
their cards, each card links back to its line (``#L3`` / ``#step-2``; highlighting uses CSS
``:target``, no script).  It is one self-contained file: inline CSS, no network, everything escaped.
"""

from __future__ import annotations

import base64
import functools
import re
from pathlib import Path
from typing import Any

from .record import StepRecord, Trace

TEMPLATE = "report.html.j2"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@functools.lru_cache(maxsize=1)
def _env():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,            # the template is *.html.j2: select_autoescape would miss it
        trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined,
    )
    env.filters["seconds"] = _fmt_seconds
    return env


def _fmt_seconds(value: float | None) -> str:
    v = float(value or 0.0)
    if v < 1.0:
        return f"{v * 1000:.0f} ms" if v >= 0.0005 else "<1 ms"
    return f"{v:.2f} s"


def safe_relpath(path: str) -> str | None:
    """A path usable in an href/src: relative, inside the run folder, no scheme (else None)."""
    p = str(path).replace("\\", "/")
    if not p or p.startswith("/") or ":" in p or any(part == ".." for part in p.split("/")):
        return None
    return p


def _package_version() -> str:
    try:
        from .. import __version__

        return __version__
    except ImportError:  # an editable install that predates vistrace/__init__.py
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("vistrace")
        except PackageNotFoundError:
            return ""


def _data_uri(path: Path, max_side: int = 768) -> str | None:
    """A base64 data URI of a picture; pictures larger than ``max_side`` are inlined downscaled."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
            ".gif": "image/gif"}.get(path.suffix.lower())
    if mime is None:
        return None
    try:
        import io

        from PIL import Image as PILImage

        with PILImage.open(io.BytesIO(data)) as im:
            if max(im.size) > max_side:
                from .artifacts import downscale

                small = downscale(im.convert("RGB"), max_side)
                buf = io.BytesIO()
                small.save(buf, format="PNG", compress_level=3)
                data, mime = buf.getvalue(), "image/png"
    except Exception:
        return None
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _program_lines(trace: Trace) -> list[dict[str, Any]]:
    """The program's lines, each with the ids of the steps it produced (multi-line statements included)."""
    by_line: dict[int, list[int]] = {}
    for s in trace.steps:
        if s.line is None:
            continue
        last = s.end_line if s.end_line and s.end_line >= s.line else s.line
        for n in range(s.line, last + 1):
            ids = by_line.setdefault(n, [])
            if s.id not in ids:
                ids.append(s.id)
    error_lines = {s.line for s in trace.steps if s.error is not None and s.line is not None}
    if trace.error is not None and trace.error.line is not None:
        error_lines.add(trace.error.line)
    return [{"no": i, "text": text, "steps": by_line.get(i, []), "error": i in error_lines}
            for i, text in enumerate(trace.program.splitlines(), start=1)]


PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif")


def _is_picture(path: str) -> bool:
    return str(path).lower().endswith(PICTURE_SUFFIXES)


def _files(paths: list[str], run_dir: Path | None) -> list[dict[str, str]]:
    """[{href, name, size}] for the artifacts that are not pictures (exported meshes): links, never inlined."""
    out = []
    for p in paths:
        rel = safe_relpath(p)
        if rel is None or _is_picture(rel):
            continue
        size = ""
        if run_dir is not None and (run_dir / rel).is_file():
            n = (run_dir / rel).stat().st_size
            size = f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"
        out.append({"href": rel, "name": rel.rsplit("/", 1)[-1], "size": size})
    return out


def _images(paths: list[str], run_dir: Path | None, inline: bool) -> list[dict[str, str]]:
    """[{src, href, name}] for the pictures that can be shown (inline: data URIs; else relative links)."""
    out = []
    for p in paths:
        rel = safe_relpath(p)
        if rel is None or not _is_picture(rel):
            continue
        name = rel.rsplit("/", 1)[-1]
        if inline:
            if run_dir is None:
                continue
            uri = _data_uri(run_dir / rel)
            if uri is None:
                continue
            out.append({"src": uri, "href": "", "name": name})
        else:
            out.append({"src": rel, "href": rel, "name": name})
    return out


def _card(step: StepRecord, run_dir: Path | None, inline: bool) -> dict[str, Any]:
    return {"s": step, "images": _images(step.artifacts, run_dir, inline), "files": _files(step.artifacts, run_dir),
            "same_name": not step.tool or step.tool == step.call}


def _render(trace: Trace, run_dir: Path | None, inline: bool) -> str:
    from .render import describe_input

    inputs = []
    for name, desc in trace.inputs.items():
        text = trace.input_summaries.get(name) or describe_input(desc)
        files = [trace.input_files[name]] if name in trace.input_files else []
        inputs.append({"name": name, "text": text, "images": _images(files, run_dir, inline)})
    n_errors = sum(1 for s in trace.steps if s.error is not None)
    return _env().get_template(TEMPLATE).render(
        t=trace, lines=_program_lines(trace), cards=[_card(s, run_dir, inline) for s in trace.steps],
        inputs=inputs, n_errors=n_errors, n_cached=sum(1 for s in trace.steps if s.cache_hit),
        version=trace.vistrace_version or _package_version(), inline=inline,
    )


def render_html(trace: Trace, run_dir: str | Path | None = None) -> str:
    """The report as one HTML string (for notebooks: ``_repr_html_``).

    With ``run_dir`` the artifact and input pictures found there are inlined as base64 data URIs;
    without it the report is text only.
    """
    return _render(trace, Path(run_dir) if run_dir is not None else None, inline=True)


def _save_inputs(recorder, run_dir: Path) -> None:
    """Write the run's input images losslessly to ``inputs/<name>.png`` and list them in ``input_files``.

    An entry already in ``input_files`` whose file exists in ``run_dir`` is kept as it is.
    """
    from ..values import Image

    trace = recorder.trace
    used: set[str] = set()
    for name, value in recorder.input_values.items():
        if not isinstance(value, Image):
            continue
        known = trace.input_files.get(name)
        if known and safe_relpath(known) and (run_dir / known).is_file():
            continue
        stem = _SAFE_NAME.sub("_", str(name)).strip("._") or "input"
        fname, n = f"{stem}.png", 1
        while fname in used:
            n += 1
            fname = f"{stem}_{n}.png"
        used.add(fname)
        try:
            (run_dir / "inputs").mkdir(parents=True, exist_ok=True)
            value.pil.save(run_dir / "inputs" / fname, format="PNG", compress_level=3)
        except Exception:
            continue
        trace.input_files[name] = f"inputs/{fname}"


def save_run(source, run_dir: str | Path, *, artifacts: bool = True, inputs: bool = True) -> Path:
    """Save a run folder: ``trace.json``, ``report.html`` and, from a Recorder, ``artifacts/`` and ``inputs/``.

    ``source`` is a :class:`~vistrace.trace.Recorder` (pictures can be drawn from its live values;
    it is closed first if nobody closed it) or a :class:`~vistrace.trace.Trace` (saved as it is;
    artifact paths it lists are linked when the files exist in ``run_dir``).  Returns ``run_dir``.
    """
    from .recorder import Recorder

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if isinstance(source, Recorder):
        if not source.trace.duration_s:
            source.close()
        if inputs:
            _save_inputs(source, run_dir)
        if artifacts:
            from .artifacts import render_artifacts

            render_artifacts(source, run_dir)
        trace = source.trace
    elif isinstance(source, Trace):
        trace = source
    else:
        raise TypeError(f"save_run needs a Recorder or a Trace, got {type(source).__name__}")
    _write_text(run_dir / "trace.json", trace.model_dump_json(indent=2))
    _write_text(run_dir / "report.html", _render(trace, run_dir, inline=False))
    return run_dir


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def load_trace(run_dir: str | Path) -> Trace:
    """Read ``trace.json`` from a run folder (or the file itself) back into a :class:`Trace`."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "trace.json"
    return Trace.model_validate_json(path.read_text(encoding="utf-8"))
