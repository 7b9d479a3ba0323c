"""Adapters: batched vs unbatched throughput of YOLO11n (detect) and DPT (depth), random weights.

Timings do not depend on the weights' values, so the real architectures with random weights give
real numbers without any download: YOLO11n is built from ultralytics' bundled ``yolo11n.yaml`` and
saved as a checkpoint; DPT from a ``DPTConfig`` (``--dpt large``: transformers' defaults, i.e. the
ViT-L/16 384 px architecture of Intel/dpt-large; ``--dpt small``: ViT-S-sized, for slow CPUs) and saved
with ``save_pretrained``. Both go through the vistrace backends exactly as a user's weights would
(settings → load → pre-processing → forward → post-processing → values).

For each model, the same ``--images`` images run one call per image (``run``) and in batches of
``--batch`` (``run_batch``, one forward pass per batch); the ratio batched/unbatched is printed.

Usage:  .venv/bin/python bench/adapters.py [--device cuda] [--images 32] [--batch 8] [--dpt large|small]
        [--only yolo|dpt] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def images(n: int):
    from vistrace.values import Image

    base = [Image.open(p) for p in sorted(EXAMPLES.glob("*.jpg"))]
    return [base[i % len(base)] for i in range(n)]


def build_yolo(folder: Path) -> Path:
    from ultralytics import YOLO

    from vistrace.tools.experts.centernet import LABELS

    path = folder / "yolo11n-random.pt"
    model = YOLO("yolo11n.yaml")
    model.model.names = dict(enumerate(LABELS))  # COCO-80 names, as a trained checkpoint has them
    model.save(str(path))
    return path


def build_dpt(folder: Path, size: str) -> Path:
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    cfg = DPTConfig() if size == "large" else DPTConfig(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                                         intermediate_size=1536, neck_hidden_sizes=[48, 96, 192, 384],
                                                         fusion_hidden_size=64)
    out = folder / f"dpt-{size}-random"
    DPTForDepthEstimation(cfg).eval().save_pretrained(out)
    DPTImageProcessor(size={"height": cfg.image_size, "width": cfg.image_size}).save_pretrained(out)
    return out


def measure(name: str, device: str, imgs, batch: int, one, many) -> dict:
    one(imgs[0])  # warm-up: load, first kernels
    many(imgs[:batch])
    sync(device)
    t = time.perf_counter()
    for im in imgs:
        one(im)
    sync(device)
    single = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(0, len(imgs), batch):
        many(imgs[i:i + batch])
    sync(device)
    batched = time.perf_counter() - t
    n = len(imgs)
    return {"model": name, "images": n, "batch": batch, "unbatched_ips": n / single, "batched_ips": n / batched,
            "ratio": single / batched}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="")
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--dpt", choices=("large", "small"), default="large")
    ap.add_argument("--only", choices=("yolo", "dpt"), default=None)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    import torch

    from vistrace.config import device as default_device
    from vistrace.tools.adapters import hf_depth, yolo

    dev = args.device or default_device()
    os.environ["VISTRACE_DEVICE"] = dev
    imgs = images(args.images)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vistrace-bench-") as tmp:
        if args.only in (None, "yolo"):
            os.environ["VISTRACE_YOLO_WEIGHTS"] = str(build_yolo(Path(tmp)))
            b = yolo.YoloDetectBackend()
            rows.append(measure("YOLO11n detect", dev, imgs, args.batch,
                                lambda im: b.run(image=im, labels=["cat"], threshold=0.25),
                                lambda ims: b.run_batch(ims, labels=["cat"], threshold=0.25)))
        if args.only in (None, "dpt"):
            os.environ["VISTRACE_DPT_MODEL"] = str(build_dpt(Path(tmp), args.dpt))
            d = hf_depth.DptBackend()
            rows.append(measure(f"DPT-{args.dpt} depth", dev, imgs, args.batch,
                                lambda im: d.run(image=im), lambda ims: d.run_batch(ims)))
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else platform.processor() or platform.machine()
    head = f"device {dev} ({gpu}), torch {torch.__version__}, threads {torch.get_num_threads()}"
    if args.markdown:
        print(head + "\n\n| model | images | batch | unbatched img/s | batched img/s | batched / unbatched |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['model']} | {r['images']} | {r['batch']} | {r['unbatched_ips']:.2f} | {r['batched_ips']:.2f} "
                  f"| {r['ratio']:.2f}x |")
    else:
        print(head)
        for r in rows:
            print(f"{r['model']:>18}: unbatched {r['unbatched_ips']:8.2f} img/s   batched(x{r['batch']}) "
                  f"{r['batched_ips']:8.2f} img/s   ratio {r['ratio']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
