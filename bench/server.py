"""The expert server under load: C concurrent clients x R detect requests each, batching on vs off.

Loopback only and bounded. The detector is YOLO11n built from ultralytics' bundled ``yolo11n.yaml``
with random weights (timings do not depend on the weights' values), served by ``vistrace serve``'s
app under uvicorn in this process; the clients are threads with their own ``RemoteTools``. The
result cache is off, so every request runs the model. Prints throughput, p50/p99 latency, errors
and the batched/unbatched ratio.

    .venv/bin/python bench/server.py [--clients 16] [--requests 4] [--device cpu|cuda] [--ray] [--markdown]

``--ray`` adds the same load against ``vistrace serve --ray`` (a local Ray instance; the detector as a
Ray Serve deployment with 1, then 2 replicas of one CPU each, batching in the replicas).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.adapters import build_yolo, images  # noqa: E402
from tests.serve.conftest import live  # noqa: E402


def load(url: str, imgs, clients: int, requests: int) -> dict:
    from vistrace.serve import RemoteTools

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    warm = RemoteTools(url)
    for im in imgs:  # upload once and load the model before timing
        warm.call("detect", {"image": im, "query": "person"})

    def client(k: int):
        rt = RemoteTools(url)
        rt._uploaded = set(warm._uploaded)
        for r in range(requests):
            t0 = time.perf_counter()
            try:
                rt.call("detect", {"image": imgs[(k + r) % len(imgs)], "query": "person"})
            except Exception as exc:  # noqa: BLE001 - counted
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else float("nan"))
    return {"requests": clients * requests, "ok": len(lat), "errors": len(errors), "wall_s": wall,
            "throughput": len(lat) / wall if wall else 0.0, "p50_ms": 1000 * p(0.5), "p99_ms": 1000 * p(0.99),
            "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"), "first_error": errors[0] if errors else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=4, help="requests per client")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--max-wait-ms", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ray", action="store_true", help="also measure Ray Serve deployments (1 and 2 replicas)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    os.environ["VISTRACE_DEVICE"] = args.device
    from vistrace.serve.app import create_app
    from vistrace.serve.batching import BatchConfig
    from vistrace.tools import default_registry

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VISTRACE_YOLO_WEIGHTS"] = str(build_yolo(Path(tmp)))
        reg = default_registry().derived(lambda t: t)
        detect = reg.get("detect")
        detect.backends = [b for b in detect.backends if b.name == "yolo"]
        imgs = images(8)
        for mode, batching in (("unbatched", None), ("batched", BatchConfig(args.max_batch, args.max_wait_ms))):
            with live(create_app(reg, cache=False, batching=batching)) as s:
                rows[mode] = load(s.url, imgs, args.clients, args.requests)
        if args.ray:
            import ray

            from vistrace.serve.ray_serve import DeploymentOptions, RayCluster, RayConfig

            # one local instance for both rounds (the replicas inherit VISTRACE_YOLO_WEIGHTS, set above)
            ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
            for replicas in (1, 2):
                cluster = RayCluster(RayConfig(default=DeploymentOptions(replicas=replicas, num_cpus=1)))
                try:
                    app = create_app(reg, cache=False, tools=["detect"], ray=cluster,
                                     batching=BatchConfig(args.max_batch, args.max_wait_ms))
                    with live(app) as s:
                        rows[f"ray, {replicas} replica{'s' if replicas > 1 else ''}"] = load(
                            s.url, imgs, args.clients, args.requests)
                finally:
                    cluster.shutdown()
            ray.shutdown()
    ratio = rows["batched"]["throughput"] / rows["unbatched"]["throughput"] if rows["unbatched"]["throughput"] else 0
    if args.markdown:
        print(f"| mode | clients x requests | ok | errors | throughput req/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|---|")
        for mode, r in rows.items():
            print(f"| {mode} | {args.clients} x {args.requests} | {r['ok']} | {r['errors']} | {r['throughput']:.1f} | "
                  f"{r['p50_ms']:.0f} | {r['p99_ms']:.0f} |")
        print(f"\nbatched / unbatched throughput: {ratio:.2f}x (device {args.device}, max batch {args.max_batch}, "
              f"max wait {args.max_wait_ms:g} ms)")
    else:
        for mode, r in rows.items():
            print(mode, {k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()})
        print(f"batched / unbatched throughput: {ratio:.2f}x")
    if args.ray:
        one, two, local = (rows[k]["throughput"] for k in ("ray, 1 replica", "ray, 2 replicas", "batched"))
        print(f"ray 1 replica / in-process batched: {one / local if local else 0:.2f}x; "
              f"ray 2 replicas / 1 replica: {two / one if one else 0:.2f}x")
    return 0 if all(r["errors"] == 0 for r in rows.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
