"""Given settings in vistrace.toml or the environment, when an adapter resolves its weights, then it finds
local files, local Hugging Face folders and ids in the user's HF cache — and says exactly what to set
when something is missing (never a download, never another model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vistrace.config import models_dir
from vistrace.errors import BackendUnavailable, InputError
from vistrace.settings import backend_settings, config_file, env_name
from vistrace.tools.adapters.base import AdapterBackend, hf_local_path, weights_fingerprint


REAL_MODELS = models_dir()  # where `make test` fetched the offline experts (read before fixtures isolate)


class FileAdapter(AdapterBackend):
    """A minimal concrete adapter over a weights file (tests the shared logic; loads the file's bytes)."""

    tool = "detect"
    name = "file_adapter"
    settings_name = "file_adapter"
    extra = "yolo"
    requires = ("json",)
    weights_key = "weights"
    weights_kind = "file"
    weights_example = "/models/x.pt"
    family = "test family"

    def load(self, path: Path, device: str):
        return path.read_bytes()

    def run(self, **args):
        return self.loaded()


class HubAdapter(FileAdapter):
    name = "hub_adapter"
    settings_name = "hub_adapter"
    weights_key = "model"
    weights_kind = "hf"
    weights_example = "org/model"


class NeedsMissingPackage(FileAdapter):
    name = "needs_pkg"
    settings_name = "needs_pkg"
    requires = ("no_such_package_vistrace_test",)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No settings file from the developer's machine leaks in: cwd and home are empty temp folders."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VISTRACE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("VISTRACE_CONFIG", raising=False)
    for var in ("HF_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def test_env_names_are_upper_case_with_underscores():
    assert env_name("grounding_dino", "model") == "VISTRACE_GROUNDING_DINO_MODEL"
    assert env_name("yolo-seg", "weights") == "VISTRACE_YOLO_SEG_WEIGHTS"


def test_settings_file_in_the_project_then_env_overrides(tmp_path, monkeypatch):
    (tmp_path / "vistrace.toml").write_text('[backends.yolo]\nweights = "/a.pt"\nimgsz = 320\n')
    s = backend_settings("yolo")
    assert s.get("weights") == "/a.pt" and s.get("imgsz") == 320
    assert s.where("weights") == f"file {tmp_path / 'vistrace.toml'}"
    monkeypatch.setenv("VISTRACE_YOLO_WEIGHTS", "/b.pt")
    s = backend_settings("yolo")
    assert s.get("weights") == "/b.pt" and s.where("weights") == "env VISTRACE_YOLO_WEIGHTS"
    assert s.get("imgsz") == 320


def test_settings_file_in_vistrace_home_is_used_when_the_project_has_none(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "vistrace.toml").write_text('[backends.sam]\ncheckpoint = "/sam.pth"\n')
    assert config_file() == home / "vistrace.toml"
    assert backend_settings("sam").get("checkpoint") == "/sam.pth"


@pytest.mark.parametrize("text, needle", [
    ("[backends.yolo\nweights=1", "not valid TOML"),
    ("backends = 3", "must hold tables"),
])
def test_a_broken_settings_file_is_named(tmp_path, text, needle):
    (tmp_path / "vistrace.toml").write_text(text)
    with pytest.raises(InputError, match=needle) as err:
        backend_settings("yolo")
    assert "vistrace.toml" in str(err.value)


def test_vistrace_config_naming_a_missing_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("VISTRACE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(InputError, match="does not exist"):
        config_file()


def test_unset_weights_name_the_setting_and_the_env_var():
    a = FileAdapter().availability()
    assert not a.ok
    assert "no weights configured" in a.reason
    assert "[backends.file_adapter]" in a.fix and "VISTRACE_FILE_ADAPTER_WEIGHTS" in a.fix
    assert FileAdapter().model == "test family (not configured)"


def test_a_missing_weights_file_names_the_path_and_where_the_setting_came_from(tmp_path, monkeypatch):
    monkeypatch.setenv("VISTRACE_FILE_ADAPTER_WEIGHTS", str(tmp_path / "missing.pt"))
    with pytest.raises(BackendUnavailable) as err:
        FileAdapter().resolve_weights()
    assert "missing.pt" in err.value.message and "env VISTRACE_FILE_ADAPTER_WEIGHTS" in err.value.message


def test_a_missing_package_names_the_extra():
    a = NeedsMissingPackage().availability()
    assert not a.ok and "no_such_package_vistrace_test" in a.reason
    assert a.fix == "pip install 'vistrace[yolo]'"


def test_present_weights_load_once_and_identify_the_file(tmp_path, monkeypatch):
    w = tmp_path / "w.pt"
    w.write_bytes(b"weights")
    monkeypatch.setenv("VISTRACE_FILE_ADAPTER_WEIGHTS", str(w))
    backend = FileAdapter()
    assert backend.availability().ok
    assert backend.run() == b"weights" and backend.run() == b"weights"
    from vistrace.tools.model_cache import MODELS

    assert sum(n for k, n in MODELS.loads.items() if k.startswith("file_adapter:")) == 1
    assert backend.model == f"test family: {w}"
    assert backend.version == weights_fingerprint(w)


def test_hub_ids_resolve_to_the_cached_snapshot_only(tmp_path, monkeypatch):
    cache = tmp_path / "hf"
    snap = cache / "models--org--tiny" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert hf_local_path("org/tiny") == snap
    assert hf_local_path("org/other") is None
    monkeypatch.setenv("VISTRACE_HUB_ADAPTER_MODEL", "org/other")
    a = HubAdapter().availability()
    assert not a.ok and "nothing is downloaded" in a.reason and str(cache) in a.reason
    monkeypatch.setenv("VISTRACE_HUB_ADAPTER_MODEL", "org/tiny")
    assert HubAdapter().resolve_weights() == snap


def test_a_local_folder_is_a_model_reference(tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    monkeypatch.setenv("VISTRACE_HUB_ADAPTER_MODEL", str(folder))
    assert HubAdapter().resolve_weights() == folder


def test_a_longer_table_name_keeps_its_own_variables(monkeypatch):
    """Given yolo and yolo_seg tables, VISTRACE_YOLO_SEG_WEIGHTS is yolo_seg's, never yolo's 'seg_weights'."""
    from vistrace.settings import declare_table

    declare_table("yolo")
    declare_table("yolo_seg")
    monkeypatch.setenv("VISTRACE_YOLO_SEG_WEIGHTS", "/seg.pt")
    monkeypatch.setenv("VISTRACE_YOLO_WEIGHTS", "/det.pt")
    assert backend_settings("yolo").values == {"weights": "/det.pt"}
    assert backend_settings("yolo_seg").values == {"weights": "/seg.pt"}


def test_doctor_lists_every_adapter_with_its_fix_and_settings(tmp_path, monkeypatch):
    """Given one adapter configured by env and the rest not, when doctor runs, then each adapter row says
    what it needs (the env var) and the configured one shows its setting and where it came from."""
    from vistrace.doctor import diagnose

    monkeypatch.setenv("VISTRACE_SAM_CHECKPOINT", str(tmp_path / "sam.pth"))
    report = diagnose()
    rows = {b["backend"]: b for t in report["tools"] for b in t["backends"]}
    for name in ("yolo", "yolo_seg", "sam", "owlv2", "grounding_dino", "dpt", "depth_anything", "hf_vqa", "hf_caption",
                 "diffusers", "gligen"):
        assert name in rows, f"doctor does not list {name}"
        assert not rows[name]["available"] and rows[name]["fix"]
    assert "VISTRACE_YOLO_WEIGHTS" in rows["yolo"]["fix"]
    assert "sam.pth" in rows["sam"]["reason"]
    assert rows["sam"]["settings"]["values"]["checkpoint"]["from"] == "env VISTRACE_SAM_CHECKPOINT"
    assert report["settings_file"] is None


def test_a_refusal_has_a_brief_form_without_setup_advice_for_unconfigured_backends(monkeypatch):
    """Given CenterNet installed and the detect adapters unconfigured, when 'face' is asked for, then the error
    lists every backend with its fix, and its brief form (what the planner is shown) only says why the
    installed detector refused — and where faces are found instead."""
    from PIL import Image as PILImage

    from vistrace.tools import default_registry
    from vistrace.values import Image

    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(REAL_MODELS))
    reg = default_registry()
    with pytest.raises(BackendUnavailable) as err:
        reg.get("detect")(reg, image=Image(PILImage.new("RGB", (64, 64))), query="face")
    assert "VISTRACE_YOLO_WEIGHTS" in str(err.value)
    assert err.value.brief and "VISTRACE_YOLO_WEIGHTS" not in err.value.brief
    assert "detect_faces" in err.value.brief
