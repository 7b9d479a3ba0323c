"""Test-wide helpers: where the shared evaluation data lives (skip with a clear reason when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared(path: str) -> Path:
    """A file of ../shared/data; the test is skipped (with the reason) when the folder is not there."""
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"shared evaluation data not present: {p} (it lives beside the repository as ../shared/data)")
    return p
