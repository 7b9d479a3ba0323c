"""``vistrace eval``: run an evaluation set, resumably, into summary.json + report.html + one folder per item."""

from __future__ import annotations

from .base import EvalItem, EvalSet, ItemResult, ModuleNote, mean, slug
from .runner import Summary, run_eval

__all__ = ["EvalItem", "EvalSet", "ItemResult", "ModuleNote", "Summary", "mean", "run_eval", "slug"]
