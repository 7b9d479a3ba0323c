"""OCR backends on public test material: character error rate, receipt totals found, latency, load time.

Material (../shared/data, see its README for provenance):

* ``ocr_tesseract/phototest.tif`` and its two quarter-turned copies ``phototest-rotated-L.png`` /
  ``-R.png``, ground truth ``phototest.txt``;
* ``sroie/img/*.jpg`` — 20 scanned receipts; ``sroie/key/*.json`` gives each one's ``total``.

Measures:

* CER = levenshtein(OCR text, reference) / len(reference), after collapsing runs of spaces in each
  line and dropping blank lines on both sides (``ocr_common.cer``); the OCR text is the backend's
  lines joined by newlines, in its reading order — so a wrong line order costs characters too;
* SROIE hit rate = share of receipts whose key total is found in the OCR text by
  ``ocr_common.amount_found`` (currency prefix RM/MYR/$/USD and spaces dropped from the key; in the
  OCR text, spaces around a '.' or ',' between digits removed and thousands commas dropped; the
  amount must then appear with no digit right before or after it);
* latency = median wall time of ``backend.run(image)``, after one warm-up call: each phototest page
  3 times, the rotated pages together, and the 20 receipts once each;
* load time = creating the engine (RapidOCR's three onnxruntime sessions) in a fresh cache; Tesseract
  has nothing to load in-process (each call starts the binary, which loads ``eng.traineddata``).

Usage:  .venv/bin/python bench/ocr.py [--backend rapidocr|tesseract|all] [--markdown] [--quick] [--grid]
``--grid`` also measures Tesseract preprocessing choices (psm × upscale target × binarisation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vistrace.tools.experts import ocr_rapid, ocr_tesseract  # noqa: E402
from vistrace.tools.experts.ocr_common import amount_found, cer  # noqa: E402
from vistrace.values import Image  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
PAGES = ("phototest.tif", "phototest-rotated-L.png", "phototest-rotated-R.png")
REPEAT = 3  # runs per phototest page (its time is their median); each receipt runs once


def load_material(quick: bool = False):
    ref = (DATA / "ocr_tesseract" / "phototest.txt").read_text()
    pages = [(name, Image.open(DATA / "ocr_tesseract" / name)) for name in PAGES]
    receipts = []
    for img in sorted((DATA / "sroie" / "img").glob("*.jpg")):
        total = json.loads((DATA / "sroie" / "key" / f"{img.stem}.json").read_text())["total"]
        receipts.append((img.stem, Image.open(img), total))
    return ref, pages, receipts[:5] if quick else receipts


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    value = fn(*args, **kw)
    return value, time.perf_counter() - t0


def measure(backend, ref: str, pages, receipts) -> dict:
    out: dict = {"backend": backend.name, "model": backend.model, "pages": {}, "misses": []}
    if isinstance(backend, ocr_rapid.RapidOCRBackend):
        _, out["load_s"] = timed(ocr_rapid.load_engine)
        backend.engine()  # the cached engine the runs use
    else:
        out["load_s"] = None
    timed(backend.run, pages[0][1])  # warm-up
    page_times = []
    for name, image in pages:
        runs = [timed(backend.run, image) for _ in range(REPEAT)]
        lines, dt = runs[0][0], statistics.median(t for _, t in runs)
        page_times.append(dt)
        out["pages"][name] = {"cer": cer(lines.text, ref), "turn": backend.last_turn, "seconds": dt}
    times, hits = [], 0
    for stem, image, total in receipts:
        lines, dt = timed(backend.run, image)
        times.append(dt)
        found = amount_found(total, lines.text)
        hits += found
        if not found:
            near = [ln.text for ln in lines if "total" in ln.text.lower()][:3]
            out["misses"].append(f"{stem} (key {total!r}; TOTAL lines read: {near})")
    out["sroie_hits"], out["sroie_n"] = hits, len(receipts)
    out["page_median_s"] = page_times[0]
    out["rotated_median_s"] = statistics.median(page_times[1:])
    out["receipt_median_s"] = statistics.median(times)
    return out


GRID = [("none", 0.0, psm) for psm in (3, 4, 11)] + [
    (binarize, target, 6) for binarize in ("none", "otsu", "adaptive") for target in (0.0, 20.0, 30.0)]


def grid(ref: str, pages, receipts) -> list[dict]:
    """Tesseract preprocessing choices: page segmentation modes as they come, then for --psm 6 every
    upscale target (0 = never upscale) with each binarisation. No rotation handling."""
    rows = []
    for binarize, target, psm in GRID:
        kw = dict(fix_rotation=False, psm=psm, target_height=target, binarize=binarize)
        (lines, _), dt = timed(ocr_tesseract.recognise, pages[0][1], **kw)
        t0, hits = time.perf_counter(), 0
        for _, image, total in receipts:
            hits += amount_found(total, ocr_tesseract.recognise(image, **kw)[0].text)
        rows.append({"binarize": binarize, "target": target, "psm": psm, "cer": cer(lines.text, ref),
                     "hits": hits, "n": len(receipts), "receipt_s": (time.perf_counter() - t0) / len(receipts)})
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


SMALL = (0.5, 0.4, 0.33)


def small_text(ref: str, pages, backends) -> list[dict]:
    """phototest shrunk (Lanczos) so its text is 9, 7 and 6 px high: each backend, and Tesseract unscaled."""
    from PIL import Image as PILImage

    src = pages[0][1].pil
    rows = []
    for f in SMALL:
        img = Image(src.resize((round(src.width * f), round(src.height * f)), PILImage.Resampling.LANCZOS))
        row = {"factor": f, "size": img.size}
        for b in backends:
            row[b.name] = cer(b.run(img).text, ref)
        row["tesseract, no upscaling"] = cer(ocr_tesseract.recognise(img, target_height=0)[0].text, ref)
        rows.append(row)
    return rows


def report(results: list[dict], markdown: bool) -> str:
    lines = []
    if markdown:
        lines += ["| backend | CER phototest | CER rotated-L | CER rotated-R | SROIE totals found | "
                  "load s | page s | rotated page s | receipt s (median) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        p = r["pages"]
        cells = [r["backend"], *(f"{100 * p[n]['cer']:.2f} %" for n in PAGES),
                 f"{r['sroie_hits']}/{r['sroie_n']} ({100 * r['sroie_hits'] / r['sroie_n']:.0f} %)",
                 "—" if r["load_s"] is None else f"{r['load_s']:.2f}",
                 f"{r['page_median_s']:.2f}", f"{r['rotated_median_s']:.2f}", f"{r['receipt_median_s']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |" if markdown else "  ".join(cells))
    for r in results:
        turns = ", ".join(f"{n}: k={r['pages'][n]['turn']}" for n in PAGES)
        lines.append(f"\n{r['backend']} ({r['model']}): page turns {turns}; SROIE misses: "
                     + ("; ".join(r["misses"]) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="all", choices=["all", "rapidocr", "tesseract"])
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--quick", action="store_true", help="5 receipts instead of 20")
    ap.add_argument("--grid", action="store_true", help="also measure Tesseract preprocessing choices")
    args = ap.parse_args(argv)
    if not (DATA / "sroie").exists():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 2
    ref, pages, receipts = load_material(args.quick)
    chosen = []
    if args.backend in ("all", "rapidocr"):
        chosen.append(ocr_rapid.RapidOCRBackend())
    if args.backend in ("all", "tesseract"):
        chosen.append(ocr_tesseract.TesseractBackend())
    results = []
    for backend in chosen:
        avail = backend.availability()
        if not avail.ok:
            print(f"{backend.name}: unavailable ({avail.reason}; fix: {avail.fix})", file=sys.stderr)
            continue
        results.append(measure(backend, ref, pages, receipts))
    print(report(results, args.markdown))
    live = [b for b in chosen if any(r["backend"] == b.name for r in results)]
    rows = small_text(ref, pages, live)
    cols = [b.name for b in live] + ["tesseract, no upscaling"]
    print("\n| phototest scaled | size | " + " | ".join(f"CER {c}" for c in cols) + " |")
    print("|---:|---|" + "---:|" * len(cols))
    for r in rows:
        print(f"| ×{r['factor']} | {r['size'][0]}×{r['size'][1]} | "
              + " | ".join(f"{100 * r[c]:.2f} %" for c in cols) + " |")
    if args.grid:
        rows = grid(ref, pages, receipts)
        print("\n| binarisation | upscale target px | psm | CER phototest | SROIE totals found | receipt s |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            print(f"| {r['binarize']} | {r['target']:.0f} | {r['psm']} | {100 * r['cer']:.2f} % | "
                  f"{r['hits']}/{r['n']} | {r['receipt_s']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
