"""Traces: one record per step, saved as a run folder (trace.json, artifacts/, report.html).

Import-light: PIL, numpy, jinja2 and rich are only imported by the functions that need them.
"""

from .artifacts import render_artifacts
from .cache import ResultCache
from .record import StepError, StepRecord, Trace
from .recorder import Recorder
from .render import observation, render_rich
from .report import load_trace, render_html, save_run
from .trajectory import to_trajectory

__all__ = [
    "Recorder", "ResultCache", "StepError", "StepRecord", "Trace", "load_trace", "observation",
    "render_artifacts", "render_html", "render_rich", "save_run", "to_trajectory",
]
