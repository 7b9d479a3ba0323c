"""What every adapter for user-brought weights shares: settings, weight resolution, loading, devices.

An adapter is a :class:`~vistrace.tools.backends.Backend` whose weights the user configures (a local
file, a local Hugging Face model folder, or a model id already in the user's Hugging Face cache). It
never downloads: a missing package, an unset setting or a missing file is a clear
:class:`BackendUnavailable` naming the setting, the environment variable and the command that fixes it.

Subclasses set ``settings_name`` (their ``[backends.NAME]`` table), ``extra`` (the pip extra that
installs their packages), ``requires`` (import names), ``weights_key`` and ``weights_kind``, and
implement ``load(path, device)`` and ``run``/``run_batch``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

from vistrace.config import device as default_device
from vistrace.errors import BackendUnavailable
from vistrace.settings import Settings, backend_settings, declare_table, env_name

from ..backends import Availability, Backend
from ..model_cache import MODELS


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache the user already has: ``$HF_HUB_CACHE``, ``$HF_HOME/hub`` or ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def hf_local_path(ref: str) -> Path | None:
    """A local folder for a model reference: the folder itself, or the cached snapshot of a hub id.

    Only looks on disk (``refs/main`` names the snapshot; else the newest snapshot); never the network.
    """
    p = Path(os.path.expanduser(ref))
    if p.is_dir():
        return p
    if p.is_absolute() or ref.startswith(".") or ref.count("/") > 1:
        return None
    repo = hf_cache_dir() / ("models--" + ref.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    ref_file = repo / "refs" / "main"
    if ref_file.is_file():
        snap = snapshots / ref_file.read_text().strip()
        if snap.is_dir():
            return snap
    found = sorted((s for s in snapshots.iterdir() if s.is_dir()), key=lambda s: s.stat().st_mtime)
    return found[-1] if found else None


def weights_fingerprint(path: Path) -> str:
    """A cheap identity for weights (names, sizes, mtimes; no full hash of multi-GB files)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)};".encode())
    return h.hexdigest()[:12]


class AdapterBackend(Backend):
    """A backend over weights the user brings; see the module docstring."""

    settings_name: ClassVar[str] = ""
    extra: ClassVar[str] = ""                       # pip extra: pip install 'vistrace[EXTRA]'
    requires: ClassVar[tuple[str, ...]] = ()        # import names that must be installed
    weights_key: ClassVar[str] = "weights"          # the settings key naming the weights
    weights_kind: ClassVar[Literal["file", "hf"]] = "file"
    weights_example: ClassVar[str] = ""             # e.g. "/models/yolo11n.pt" or "google/owlv2-base-patch16"
    family: ClassVar[str] = ""                      # shown as the model when nothing is configured
    priority: ClassVar[int] = 30                    # weights the user brought win over the offline defaults
    load_keys: ClassVar[tuple[str, ...]] = ("dtype", "variant", "model_type")  # settings that change the loaded model

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.settings_name:
            declare_table(cls.settings_name)

    # settings ----------------------------------------------------------------------------
    def settings(self) -> Settings:
        return backend_settings(self.settings_name or self.name)

    def setting_hint(self, key: str | None = None) -> str:
        key = key or self.weights_key
        table = self.settings_name or self.name
        return (f"set `{key} = \"{self.weights_example or '...'}\"` under [backends.{table}] in vistrace.toml, "
                f"or {env_name(table, key)}=...")

    def device(self) -> str:
        return str(self.settings().get("device") or default_device())

    # availability ------------------------------------------------------------------------
    def missing_packages(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def weights_ref(self) -> str | None:
        value = self.settings().get(self.weights_key)
        return str(value) if value not in (None, "") else None

    def resolve_weights(self) -> Path:
        """The local weights path; BackendUnavailable naming the setting when unset or missing."""
        ref = self.weights_ref()
        if ref is None:
            raise BackendUnavailable(f"{self.name}: no weights configured ({self.family})", fix=self.setting_hint())
        if self.weights_kind == "file":
            path = Path(os.path.expanduser(ref))
            if not path.is_file():
                raise BackendUnavailable(f"{self.name}: weights file not found: {path} "
                                         f"(setting '{self.weights_key}' from {self.settings().where(self.weights_key)})",
                                         fix=f"put the file there, or {self.setting_hint()}")
            return path
        path = hf_local_path(ref)
        if path is None:
            raise BackendUnavailable(
                f"{self.name}: model '{ref}' is neither a local folder nor in the Hugging Face cache {hf_cache_dir()} "
                f"(setting '{self.weights_key}' from {self.settings().where(self.weights_key)}); nothing is downloaded",
                fix=f"copy the model folder here and name it, or {self.setting_hint()}")
        return path

    def availability(self) -> Availability:
        missing = self.missing_packages()
        if missing:
            return Availability(False, f"{self.name} needs the Python package(s) {', '.join(missing)}",
                                f"pip install 'vistrace[{self.extra}]'")
        try:
            path = self.resolve_weights()
        except BackendUnavailable as exc:
            return Availability(False, exc.message, exc.fix)
        return Availability(True, f"{self.name}: weights at {path}")

    # identity (what the trace and the result cache record) --------------------------------
    @property
    def model(self) -> str:  # type: ignore[override]
        ref = self.weights_ref()
        return f"{self.family}: {ref}" if ref else f"{self.family} (not configured)"

    @property
    def version(self) -> str:  # type: ignore[override]
        try:
            return weights_fingerprint(self.resolve_weights())
        except (BackendUnavailable, OSError):
            return "unconfigured"

    # loading -----------------------------------------------------------------------------
    @abstractmethod
    def load(self, path: Path, device: str) -> Any:
        """Build the model from local weights on ``device`` (called once per key, via the model cache)."""

    def loaded(self) -> Any:
        """The loaded model, once per (backend, weights, device) in the process-wide LRU cache."""
        path = self.resolve_weights()
        dev = self.device()
        s = self.settings()
        loading = ":".join(str(s.get(k) or "") for k in self.load_keys)  # settings that change what is loaded
        key = f"{self.name}:{path}:{weights_fingerprint(path)}:{dev}:{loading}"
        return MODELS.get(key, lambda: self.load(path, dev), torch_bytes)


def torch_bytes(model: Any) -> int:
    """Estimated bytes of a loaded model (parameters + buffers of any torch modules it holds)."""
    try:
        import torch
    except ImportError:
        return 0
    modules = [model] if isinstance(model, torch.nn.Module) else [
        v for v in (getattr(model, "__dict__", {}) or {}).values() if isinstance(v, torch.nn.Module)]
    seen: set[int] = set()
    total = 0
    for m in modules:
        for t in list(m.parameters()) + list(m.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()
    return total
