"""CenterNet ``detect``, BlazeFace ``detect_faces``, MoveNet ``pose``: load time, latency, peak RSS, quality.

Measures, in one fresh process, for each of the three TFJS-graph backends:

* load    -- the first ``models.require`` of its files (sha256) and ``Graph.load`` (parse model.json,
             decode the .bin, constants to the device), after ``import torch`` (timed on its own);
* latency -- the median of ``--repeat`` calls after ``--warmup`` calls, end to end (``backend.run``:
             letterbox + graph + decode + NMS) and the graph alone;
* peak RSS of the process after each backend (``ru_maxrss``, cumulative);
* quality -- CenterNet on the COCO fixture (best IoU per ground-truth object, at the default score
             floor and at 0.15), the VPEval dogs count, letterbox vs stretch; BlazeFace and MoveNet
             on skimage's astronaut.

Usage:  .venv/bin/python bench/detection.py [--repeat 10] [--warmup 2] [--threads N] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COCO = DATA / "coco_fixture" / "000000039769.png"
COCO_ANN = DATA / "coco_fixture" / "000000039769_annotations.json"
DOGS = DATA / "vpeval" / "examples" / "dogs.jpg"


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_ms(fn, repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        times.append(timed(fn)[1])
    return statistics.median(times) * 1000


def measure(name: str, backend, image, call, graph_feed, repeat: int, warmup: int, t_verify: float) -> dict:
    from vistrace.config import device
    from vistrace.tools import models
    from vistrace.tools.experts.tfjs import Graph
    from vistrace.tools.model_cache import MODELS

    spec = models.known_models()[name]
    graph, t_load = timed(lambda: Graph.load(spec.path(), device()))
    # hand the graph we just timed to the cache, so the backend does not load it again
    MODELS.get(f"tfjs:{name}:{device()}", lambda: graph, graph.nbytes)
    feed, outs = graph_feed(graph)
    return {
        "backend": name, "verify_s": t_verify, "load_s": t_load, "weights_mb": graph.nbytes / 2**20,
        "end_to_end_ms": median_ms(lambda: call(backend, image), repeat, warmup),
        "graph_ms": median_ms(lambda: graph.run(feed, outs), repeat, warmup),
        "peak_rss_mb": rss_mb(), "image": f"{image.width}x{image.height}",
    }


def centernet_quality() -> dict:
    from vistrace.tools.experts.centernet import DEFAULT_SCORE, LABELS, NMS_IOU, CenterNetBackend
    from vistrace.tools.experts.tfjs.support import nms
    from vistrace.values import Box, Image

    b = CenterNetBackend()
    out: dict = {"default_score": DEFAULT_SCORE, "coco": [], "dogs": None, "modes": []}
    if COCO.exists():
        img = Image.open(COCO)
        ann = json.loads(COCO_ANN.read_text())
        for floor in (DEFAULT_SCORE, 0.15):
            for a in ann["annotations"]:
                found = b.run(image=img, labels=[a["category"]], threshold=floor)
                truth = Box(*a["bbox_xyxy"])
                best = max(found, key=lambda d: d.iou(truth), default=None)
                out["coco"].append({"floor": floor, "object": a["category"],
                                    "truth": [round(v) for v in a["bbox_xyxy"]],
                                    "iou": round(best.iou(truth), 2) if best else 0.0,
                                    "score": round(best.score, 3) if best else None, "found": len(found)})
    if DOGS.exists():
        dogs = b.run(image=Image.open(DOGS), labels=["dog"], threshold=0.0)
        out["dogs"] = {"count": len(dogs), "scores": [round(d.score, 3) for d in dogs]}
    for letterboxed in (True, False):
        for per_class in (True, False):
            row = {"letterbox": letterboxed, "per_class_nms": per_class}
            for key, path, wanted in (("cats", COCO, {"cat"}), ("couch/bed", COCO, {"couch", "bed"}),
                                      ("dogs", DOGS, {"dog"})):
                if not path.exists():
                    continue
                boxes, scores, classes = b.raw(Image.open(path), letterboxed=letterboxed)
                keep = [i for i in nms(boxes, scores, NMS_IOU, classes if per_class else None)
                        if LABELS[classes[i]] in wanted and scores[i] >= DEFAULT_SCORE]
                row[key] = [f"{LABELS[classes[i]]} {scores[i]:.3f}" if len(wanted) > 1 else round(float(scores[i]), 3)
                            for i in keep]
            out["modes"].append(row)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch's default)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    rss0 = rss_mb()
    torch, t_import = timed(lambda: __import__("torch"))
    if args.threads:
        torch.set_num_threads(args.threads)
    import skimage.data

    from vistrace.config import device
    from vistrace.tools.experts.blazeface import BlazeFaceBackend
    from vistrace.tools.experts.centernet import CenterNetBackend
    from vistrace.tools.experts.movenet import MoveNetBackend
    from vistrace.tools.experts.tfjs import support
    from vistrace.values import Image

    verify = {}
    for name in ("centernet", "blazeface", "movenet"):
        avail, verify[name] = timed(lambda: support.availability(name))  # the first call hashes the files
        if not avail.ok:
            print(f"{name}: {avail.reason} (fix: {avail.fix})", file=sys.stderr)
            return 2
    astro = Image.from_array(skimage.data.astronaut(), source="astronaut")
    coco = Image.open(COCO) if COCO.exists() else astro
    rss_torch = rss_mb()
    import numpy as np

    rows = [
        measure("centernet", CenterNetBackend(), coco, lambda b, im: b.run(image=im, labels=["cat"], threshold=0.0),
                lambda g: ({"tower_0/images": np.zeros((1, 512, 512, 3), np.float32)}, ["tower_0/detections"]),
                args.repeat, args.warmup, verify["centernet"]),
        measure("blazeface", BlazeFaceBackend(), astro, lambda b, im: b.run(image=im),
                lambda g: ({"input": np.zeros((1, 256, 256, 3), np.float32)}, g.model.outputs),
                args.repeat, args.warmup, verify["blazeface"]),
        measure("movenet", MoveNetBackend(), astro, lambda b, im: b.run(image=im),
                lambda g: ({"input": np.zeros((1, 192, 192, 3), np.int32)}, ["Identity"]), args.repeat, args.warmup,
                verify["movenet"]),
    ]
    quality = centernet_quality()
    face = BlazeFaceBackend().run(image=astro)
    pose = MoveNetBackend().run(image=astro)

    threads = torch.get_num_threads()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device()}, torch {torch.__version__}, {threads} thread(s), {os.cpu_count()} CPUs "
          f"({platform.machine()}), load average {load:.1f}")
    print(f"import torch {t_import:.2f} s; RSS {rss0:.0f} MB before torch, {rss_torch:.0f} MB after import")
    if args.markdown:
        print("\n| backend | image | verify (sha256) s | Graph.load s | weights MB | ms/image end to end "
              "| ms graph | peak RSS MB |\n|---|---|---:|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['backend']} | {r['image']} | {r['verify_s']:.3f} | {r['load_s']:.3f} | {r['weights_mb']:.1f} "
                  f"| {r['end_to_end_ms']:.0f} | {r['graph_ms']:.0f} | {r['peak_rss_mb']:.0f} |")
        print("\n| floor | object | truth (x1,y1,x2,y2) | found | best IoU | its score |\n|---|---|---|---:|---:|---:|")
        for q in quality["coco"]:
            print(f"| {q['floor']} | {q['object']} | {q['truth']} | {q['found']} | {q['iou']:.2f} | {q['score']} |")
        print("\n| letterbox | per-class NMS | COCO cats (scores) | COCO couch/bed | VPEval dogs (scores) |"
              "\n|:-:|:-:|---|---|---|")
        for m in quality["modes"]:
            print(f"| {'✓' if m['letterbox'] else '✗ (stretch)'} | {'✓' if m['per_class_nms'] else '✗'} "
                  f"| {m.get('cats')} | {', '.join(m.get('couch/bed', []))} | {m.get('dogs')} |")
    else:
        for r in rows:
            print(f"{r['backend']:10s} {r['image']:>8s} verify {r['verify_s']:.3f}s load {r['load_s']:.3f}s "
                  f"{r['weights_mb']:.1f} MB  end-to-end {r['end_to_end_ms']:.0f} ms  graph {r['graph_ms']:.0f} ms  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB")
        for q in quality["coco"]:
            print(f"  floor {q['floor']}: {q['object']:7s} found {q['found']} best IoU {q['iou']:.2f} "
                  f"score {q['score']}")
        for m in quality["modes"]:
            print(f"  letterbox={m['letterbox']} per_class={m['per_class_nms']}: cats {m.get('cats')} "
                  f"couch/bed {m.get('couch/bed')} dogs {m.get('dogs')}")
    print(f"\ndogs.jpg: {quality['dogs']}")
    print(f"astronaut face: {[(tuple(round(v) for v in f.xyxy), round(f.score, 3)) for f in face]}")
    print("astronaut pose: " + ", ".join(f"{n} ({x:.0f},{y:.0f}) {s:.2f}" for n, (x, y, s) in pose.points.items()
                                          if n in ("nose", "left_eye", "right_eye", "left_shoulder", "right_shoulder")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
