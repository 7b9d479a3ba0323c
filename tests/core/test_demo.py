"""Given the demo manifest (what `make demo` runs), when every example runs, then each one succeeds and
writes its report — the README's first command stays green."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from vistrace.demo import run_examples

MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "manifest.json"


@pytest.mark.slow
def test_every_demo_example_runs(tmp_path):
    console = Console(record=True, width=160)
    code = run_examples(MANIFEST, tmp_path / "demo", console)
    assert code == 0, console.export_text()
    assert (tmp_path / "demo" / "index.html").is_file()
    assert (tmp_path / "demo" / "sketch_layout" / "report.html").is_file()
