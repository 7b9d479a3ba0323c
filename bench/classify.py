"""MobileNetV2 ``classify``: load time, latency per image, and labels on the skimage photographs.

Measures, in one fresh process:

* load    -- ``import torch``; the first ``models.require`` (sha256 of the 14 MB checkpoint); building
             the network and ``load_state_dict(strict=True)``;
* latency -- per image, the median of ``--repeat`` calls after ``--warmup`` calls, both end to end
             (``MobileNetBackend().run``: preprocessing + forward + top-k) and the network alone;
* labels  -- top-1 / top-5 hits on the skimage photographs that show an ImageNet class (a sanity
             set of five images, not an accuracy measurement), and the top-5 of each image.

Usage:  .venv/bin/python bench/classify.py [--repeat 10] [--warmup 3] [--threads N] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# image -> the ImageNet classes that count as right for it (None: no ImageNet class shows it)
EXPECTED: dict[str, set[str] | None] = {
    "chelsea": {"tabby", "tiger cat", "Egyptian cat"},
    "coffee": {"espresso", "cup", "coffee mug"},
    "camera": {"tripod", "reflex camera", "Polaroid camera"},
    "rocket": {"space shuttle", "missile", "projectile"},
    "clock": {"wall clock", "analog clock"},
    "astronaut": None,
}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    torch, t_import = timed(lambda: __import__("torch"))
    if args.threads:
        torch.set_num_threads(args.threads)
    import skimage.data
    from PIL import Image as PILImage

    from vistrace.config import device
    from vistrace.tools import models
    from vistrace.tools.experts import mobilenet
    from vistrace.tools.model_cache import MODELS
    from vistrace.values import Image

    path, t_verify = timed(lambda: models.require(mobilenet.MODEL_NAME))
    dev = device()
    net, t_build = timed(lambda: mobilenet.load_mobilenet_v2(path, dev))
    MODELS.get(f"torch:{mobilenet.MODEL_NAME}:{dev}", lambda: net, mobilenet.model_bytes)  # what run() uses
    backend = mobilenet.MobileNetBackend()

    rows = []
    for name, expected in EXPECTED.items():
        image = Image(PILImage.fromarray(getattr(skimage.data, name)()), source=f"skimage.data.{name}")
        x = torch.from_numpy(mobilenet.preprocess(image.pil)).to(dev)
        for _ in range(args.warmup):
            labels = backend.run(image=image, top_k=5)
        e2e = [timed(lambda im=image: backend.run(image=im, top_k=5))[1] for _ in range(args.repeat)]
        with torch.inference_mode():
            netonly = [timed(lambda t=x: net(t))[1] for _ in range(args.repeat)]
        rows.append((name, image.size, expected, labels, statistics.median(e2e), statistics.median(netonly)))

    scored = [r for r in rows if r[2] is not None]
    top1 = sum(r[3].top in r[2] for r in scored)
    top5 = sum(bool(r[2] & set(r[3].names)) for r in scored)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = (f"device {dev}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), load average {load:.1f}")
    loadline = (f"load: import torch {t_import:.2f} s, sha256 verify {t_verify:.2f} s, "
                f"build + load_state_dict {t_build:.3f} s, model {mobilenet.model_bytes(net) / 1e6:.1f} MB")
    if args.markdown:
        print(head + "  \n" + loadline + "\n")
        print("| image | size | top-5 (probability) | expected | top-1 | top-5 | ms/image end to end | ms network |")
        print("|---|---|---|---|:-:|:-:|---:|---:|")
        for name, (w, h), exp, labels, e, n in rows:
            hit1 = "—" if exp is None else ("✓" if labels.top in exp else "✗")
            hit5 = "—" if exp is None else ("✓" if exp & set(labels.names) else "✗")
            top = ", ".join(f"{lab} {p:.2f}" for lab, p in labels)
            want = "(no ImageNet class)" if exp is None else " / ".join(sorted(exp))
            print(f"| {name} | {w}×{h} | {top} | {want} | {hit1} | {hit5} | {e * 1000:.1f} | {n * 1000:.1f} |")
        print(f"\ntop-1 {top1}/{len(scored)}, top-5 {top5}/{len(scored)}; median of {args.repeat} "
              f"after {args.warmup} warm-up calls")
    else:
        print(head)
        print(loadline)
        for name, size, exp, labels, e, n in rows:
            print(f"{name:10s} {size!s:12s} e2e {e * 1000:7.1f} ms  net {n * 1000:7.1f} ms  {labels.summary()}")
        print(f"top-1 {top1}/{len(scored)}  top-5 {top5}/{len(scored)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
