"""Shared set-up for the adapter tests: no settings leak in from the machine, one torch thread, and a
registry holding exactly the backends under test."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vistrace.tools import Registry
from vistrace.tools.builtin import register_builtin
from vistrace.values import Image


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    """An empty project folder, home and Hugging Face cache (tmp/hub); the CPU; no VISTRACE_* settings."""
    for name in [n for n in os.environ if n.startswith("VISTRACE_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("VISTRACE_DEVICE", "cpu")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (the CI machine has two cores, shared with the rest of the run)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def registry_with(*backends) -> Registry:
    """The built-in tools with exactly these backends."""
    reg = Registry()
    register_builtin(reg)
    for b in backends:
        reg.add_backend(b)
    return reg


def picture(w: int, h: int, seed: int = 0) -> Image:
    """A w x h image of seeded RGB noise."""
    rng = np.random.default_rng(seed)
    return Image.from_array(rng.integers(0, 255, size=(h, w, 3)).astype(np.uint8), source=f"noise {w}x{h} seed {seed}")
