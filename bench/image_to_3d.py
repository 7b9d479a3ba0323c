"""Image to 3-D on the skimage stereo pair: time per stage, the rules' choice, and the four meshers side by side.

Measures, in one process (after one untimed warm-up of the whole pipeline, so imports and Open3D's
first call are not counted):

* stages   -- depth_for (StereoSGBM), point_cloud, measure_points, choose_mesher, mesh (the chosen
              method), export_mesh x3 (PLY, OBJ, GLB), render_mesh: the median of ``--repeat`` runs;
* choice   -- the method the rules chose and every reason, with the measurements;
* meshers  -- all four methods on the same cloud and measurements: time (median of ``--repeat``),
              vertices, faces, watertight, boundary edges, and time relative to the chosen method.

Usage:  .venv/bin/python bench/image_to_3d.py [--repeat 3] [--max-points 60000] [--markdown]
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

METHODS = ("grid", "poisson", "ball_pivoting", "alpha_shape")


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-points", type=int, default=60000)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()

    import open3d
    import skimage.data
    import trimesh
    from vistrace.tools import default_registry

    from vistrace.values import Image

    reg = default_registry()
    left, right, _ = skimage.data.stereo_motorcycle()
    L, R = Image.from_array(left, "motorcycle left"), Image.from_array(right, "motorcycle right")

    def call(name, **kw):
        return reg.get(name).invoke(kw, reg)[0]

    def pipeline():
        dm = call("depth_for", image=L, right=R)
        pc = call("point_cloud", depth=dm, image=L, max_points=args.max_points)
        st = call("measure_points", points=pc)
        ch = call("choose_mesher", stats=st)
        me = call("mesh", points=pc, method=ch.method, stats=st)
        return dm, pc, st, ch, me

    pipeline()  # warm-up
    stages = []
    dm, t = timed(lambda: call("depth_for", image=L, right=R), args.repeat)
    stages.append(("depth_for (StereoSGBM)", t))
    pc, t = timed(lambda: call("point_cloud", depth=dm, image=L, max_points=args.max_points), args.repeat)
    stages.append(("point_cloud", t))
    st, t = timed(lambda: call("measure_points", points=pc), args.repeat)
    stages.append(("measure_points", t))
    ch, t = timed(lambda: call("choose_mesher", stats=st), args.repeat)
    stages.append(("choose_mesher", t))
    me, t = timed(lambda: call("mesh", points=pc, method=ch.method, stats=st), args.repeat)
    stages.append((f"mesh ({ch.method})", t))
    for fmt in ("ply", "obj", "glb"):
        f, t = timed(lambda fmt=fmt: call("export_mesh", mesh=me, format=fmt), args.repeat)
        stages.append((f"export_mesh {fmt} ({f.size / 1e6:.2f} MB)", t))
    _, t = timed(lambda: call("render_mesh", mesh=me), args.repeat)
    stages.append(("render_mesh (640 px)", t))

    rows = []
    for m in METHODS:
        out, t = timed(lambda m=m: call("mesh", points=pc, method=m, stats=st), args.repeat)
        rows.append((m, t, out))
    chosen_t = next(t for m, t, _ in rows if m == ch.method)

    md = args.markdown
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, CPython "
          f"{platform.python_version()}, Open3D {open3d.__version__}, trimesh {trimesh.__version__}")
    print(f"input: skimage.data.stereo_motorcycle() {L.width}x{L.height}; median of {args.repeat} runs after a warm-up")
    print(f"cloud: {pc.summary()}")
    for a in pc.assumptions:
        print(f"  assumption: {a}")
    print(f"measured: {st.summary()}")
    print(f"chosen: {ch.method} (rule {ch.rule})")
    for r in ch.reasons:
        print(f"  reason: {r}")
    print()
    total = sum(t for _, t in stages)
    if md:
        print("| stage | time |\n|---|---:|")
        for name, t in stages:
            print(f"| {name} | {t * 1000:.0f} ms |")
        print(f"| **total** | **{total * 1000:.0f} ms** |")
        print()
        print("| method | time | × chosen | vertices | faces | watertight | boundary edges |")
        print("|---|---:|---:|---:|---:|---|---:|")
        for m, t, out in rows:
            mark = " (chosen)" if m == ch.method else ""
            print(f"| {m}{mark} | {t * 1000:.0f} ms | {t / chosen_t:.1f}× | {out.vertex_count} | {out.face_count} | "
                  f"{'yes' if out.watertight else 'no'} | {out.boundary_edges} |")
    else:
        for name, t in stages:
            print(f"{name:34s} {t * 1000:8.0f} ms")
        print(f"{'total':34s} {total * 1000:8.0f} ms\n")
        print(f"{'method':16s} {'time':>9s} {'x chosen':>9s} {'vertices':>9s} {'faces':>9s} {'watertight':>11s} "
              f"{'boundary':>9s}")
        for m, t, out in rows:
            print(f"{m:16s} {t * 1000:7.0f} ms {t / chosen_t:8.1f}x {out.vertex_count:9d} {out.face_count:9d} "
                  f"{'yes' if out.watertight else 'no':>11s} {out.boundary_edges:9d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
