"""Isolation overhead: the same small programs run in-process and in the isolated worker.

Each program runs ``--repeat`` times both ways (cache off, tools in this process either way); the
median wall time of a whole ``vistrace.run`` call is printed for each, with the ratio
isolated/in-process and the difference (mostly the worker's start: a fresh ``python -I -B`` that imports
the sandbox, then one pipe round trip per ``begin`` and per ``call``).

Programs:
  builtins  three tool calls of the builtin ``box``/``crop`` tools on chelsea.jpg (451x300): the image
            crosses the pipe once (raw pixels), crops come back as pixels
  pure      no tool call: a loop of 3,000 iterations in the interpreter (worker start + compute)
  ocr       one OCR call (RapidOCR) on page.png: a realistic expert call, where the start is amortized

Usage:  .venv/bin/python bench/isolation.py [--repeat 7] [--only builtins|pure|ocr]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

IMAGES = Path(__file__).resolve().parents[1] / "examples" / "images"
PROGRAMS = {
    "builtins": ("b = box(0, 0, 50, 40)\nc = crop(image, b)\nd = crop(c, box(0, 0, 20, 20))\nresult = [c.width, d.width]\n",
                 "chelsea.jpg"),
    "pure": ("t = 0\nfor i in range(3000):\n    t = t + i % 7\nresult = t\n", None),
    "ocr": ("lines = ocr(image)\nresult = len(lines.text)\n", "page.png"),
}


def timed(program: str, registry, inputs: dict, repeat: int) -> tuple[float, float]:
    """Median seconds in-process and isolated; the two alternate, so a drifting machine load hits both."""
    import vistrace

    times: dict[bool, list[float]] = {False: [], True: []}
    values = {}
    for _ in range(repeat):
        for isolate in (False, True):
            t = time.perf_counter()
            run = vistrace.run(program, registry=registry, cache=False, isolate=isolate, **inputs)
            times[isolate].append(time.perf_counter() - t)
            if run.error is not None:
                raise SystemExit(f"the run failed: {run.error}")
            values[isolate] = run.value
    assert values[False] == values[True], values
    return statistics.median(times[False]), statistics.median(times[True])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--only", choices=sorted(PROGRAMS))
    args = ap.parse_args()
    from vistrace.tools import default_registry
    from vistrace.values import Image

    reg = default_registry()
    print(f"{'program':10} {'in-process':>12} {'isolated':>12} {'ratio':>7} {'overhead':>10}")
    for name, (program, image) in PROGRAMS.items():
        if args.only and name != args.only:
            continue
        inputs = {"image": Image.open(IMAGES / image)} if image else {}
        timed(program, reg, inputs, 1)          # warm: models loaded, modules imported
        plain, iso = timed(program, reg, inputs, args.repeat)
        print(f"{name:10} {plain * 1000:10.1f}ms {iso * 1000:10.1f}ms {iso / plain:6.1f}x {(iso - plain) * 1000:8.1f}ms")


if __name__ == "__main__":
    main()
