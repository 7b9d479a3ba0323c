"""Given model files pinned to packages, when they are required, fetched or broken, then errors name
the file and the command that fixes it, and verified files are found."""

from __future__ import annotations

import pytest

from vistrace.errors import BackendUnavailable
from vistrace.tools import models
from vistrace.tools.experts import files  # noqa: F401 - registers the model files
from vistrace.tools.model_cache import ModelCache


@pytest.fixture
def empty_models_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


def test_missing_model_file_names_file_and_fetch_command(empty_models_dir):
    with pytest.raises(BackendUnavailable) as info:
        models.require("centernet")
    assert str(empty_models_dir) in info.value.message and "centernet.json" in info.value.message
    assert "vistrace models fetch centernet" in info.value.fix


def test_corrupt_model_file_is_a_hash_mismatch_with_force_fix(empty_models_dir):
    spec = models.known_models()["mobilenet_v2"]
    path = spec.path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the weights")
    with pytest.raises(BackendUnavailable) as info:
        models.require("mobilenet_v2")
    assert "corrupt" in info.value.message and str(path) in info.value.message
    assert "--force" in info.value.fix


def test_unknown_model_name_lists_the_known_ones(empty_models_dir):
    from vistrace.errors import VistraceError

    with pytest.raises(VistraceError, match="unknown model file 'yolo'") as info:
        models.fetch(["yolo"])
    assert "centernet" in info.value.hint


def test_model_cache_loads_once_and_evicts_least_recently_used():
    cache = ModelCache(budget_bytes=100)
    calls = []
    a = cache.get("a", lambda: calls.append("a") or "A", 60)
    assert cache.get("a", lambda: calls.append("a2") or "A2", 60) is a
    cache.get("b", lambda: calls.append("b") or "B", 60)   # over budget: a is evicted
    assert calls == ["a", "b"] and list(cache.loaded()) == ["b"]
    assert cache.loads == {"a": 1, "b": 1}
