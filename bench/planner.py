"""The planner on 30 questions: program valid on the first try, valid after repair, answer correct.

Questions cover counts, presence, positions, faces, whole-image labels and reading text (receipt totals
and dates, printed pages, scene-text words) over images in ``../shared/data``, ``examples/images`` and
skimage. Expected answers are ground truth (COCO annotations, SROIE key fields, Tesseract's page text,
the scene-text labels, or what the picture plainly shows), never a detector's output, so "correct"
measures the whole chain: plan, tools and experts.

"valid" means the program passed ``check`` and ran without error; "first try" counts questions whose
first attempt did so; "after repair" those answered within the agent's repair budget.

Usage:  .venv/bin/python bench/planner.py [--llm local] [--decoding auto|typed|program|plain] [--max-repairs 3] [--only N]
        [--json out.json] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "examples" / "images"


def number(expected: float) -> Callable[[str], bool]:
    def ok(text: str) -> bool:
        found = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
        if text.strip().lower() in ("true", "false"):
            return False
        return bool(found) and abs(float(found[0]) - expected) < 1e-6
    return ok


def yes(expected: bool) -> Callable[[str], bool]:
    def ok(text: str) -> bool:
        t = text.strip().lower()
        said_yes = t in ("true", "yes") or t.startswith("yes") or (t.isdigit() and int(t) > 0)
        said_no = t in ("false", "no", "0", "none", "[]") or t.startswith("no")
        return said_yes if expected else said_no
    return ok


def contains(*words: str) -> Callable[[str], bool]:
    return lambda text: any(w.lower() in text.lower() for w in words)


@dataclass(frozen=True)
class Q:
    image: str      # path relative to the repository root, or "skimage:NAME"
    question: str
    correct: Callable[[str], bool]
    kind: str


def receipt_key(n: str, field: str) -> str:
    return json.loads((DATA / "sroie" / "key" / f"{n}.json").read_text())[field]


# An answer is a few words: a program that returns a whole page of OCR text (which contains the total
# somewhere) has not answered "what is the total?", so longer answers never count as correct.
MAX_ANSWER = 80

COCO = "../shared/data/coco_fixture/000000039769.png"
DOGS = "../shared/data/vpeval/examples/dogs.jpg"


def questions() -> list[Q]:
    qs = [
        Q(COCO, "How many cats are in the picture?", number(2), "count"),
        Q(COCO, "How many remotes are there?", number(2), "count"),
        Q(COCO, "Is there a couch in the image?", yes(True), "presence"),
        Q(COCO, "Is there a dog in the image?", yes(False), "presence"),
        Q(COCO, "Is there a remote in the left half of the image?", yes(True), "position"),
        Q(COCO, "Is the leftmost remote to the left of the rightmost cat?", yes(True), "position"),
        Q("examples/images/chelsea.jpg", "What animal is in the photo?", contains("cat", "tabby"), "label"),
        Q("examples/images/chelsea.jpg", "How many cats are there?", number(1), "count"),
        Q("examples/images/astronaut.jpg", "How many faces are in the image?", number(1), "count"),
        Q("examples/images/astronaut.jpg", "Is there a person in the picture?", yes(True), "presence"),
        Q("examples/images/astronaut.jpg", "Is the face in the top half of the image?", yes(True), "position"),
        Q(DOGS, "How many dogs are in the image?", number(3), "count"),
        Q(DOGS, "Is there a cat in the image?", yes(False), "presence"),
        Q(DOGS, "Is the leftmost dog in the left half of the image?", yes(True), "position"),
        Q("skimage:coffee", "What is in this photo?", contains("cup", "espresso", "coffee", "mug"), "label"),
        Q("skimage:rocket", "What object is shown?", contains("rocket", "shuttle", "missile", "projectile"), "label"),
        Q("../shared/data/ocr_tesseract/phototest.tif", "What is the first word of the text?", contains("this"), "read"),
        Q("../shared/data/ocr_tesseract/phototest.tif", "Does the page contain the word 'format'?", yes(True), "read"),
        Q("../shared/data/scene_text_words/demo_3.png", "What word is written in the image?", contains("london"), "read"),
        Q("../shared/data/scene_text_words/demo_5.png", "What word is written in the image?", contains("toast"), "read"),
    ]
    for n in ("002", "032", "043", "055", "081", "138", "156", "174"):
        qs.append(Q(f"../shared/data/sroie/img/{n}.jpg", "What is the total amount on this receipt?",
                    contains(receipt_key(n, "total")), "receipt total"))
    for n in ("002", "043"):
        qs.append(Q(f"../shared/data/sroie/img/{n}.jpg", "What is the date on this receipt?",
                    contains(receipt_key(n, "date")), "receipt date"))
    return qs


def load_image(ref: str, tmp: Path) -> Path:
    if ref.startswith("skimage:"):
        import skimage.data
        from PIL import Image

        name = ref.split(":", 1)[1]
        path = tmp / f"{name}.png"
        if not path.exists():
            Image.fromarray(getattr(skimage.data, name)()).save(path)
        return path
    return (ROOT / ref).resolve()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="local")
    ap.add_argument("--no-grammar", action="store_true", help="same as --decoding plain")
    ap.add_argument("--decoding", choices=("auto", "typed", "program", "plain"), default="auto",
                    help="auto: typed where the model continues a prefix (local), else the program grammar")
    ap.add_argument("--max-repairs", type=int, default=3)
    ap.add_argument("--only", type=int, default=0, help="the first N questions only")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if not DATA.exists():
        print(f"shared data not found at {DATA}", file=sys.stderr)
        return 2

    import vistrace
    from vistrace.agent.result import AgentFailed

    decoding = "plain" if args.no_grammar else args.decoding
    agent = vistrace.Agent(llm=args.llm, grammar=decoding, max_repairs=args.max_repairs)
    qs = questions()[: args.only or None]
    rows = []
    with tempfile.TemporaryDirectory(prefix="vistrace-planner-") as tmp:
        for i, q in enumerate(qs, 1):
            path = load_image(q.image, Path(tmp))
            t = time.perf_counter()
            try:
                ans = agent.ask([str(path)], q.question)
                attempts, value, ok = ans.attempts, ans.value, True
            except AgentFailed as exc:
                attempts, value, ok = exc.attempts, None, False
            secs = time.perf_counter() - t
            text = getattr(value, "text", None) if value is not None and not isinstance(value, (str, int, float, bool)) else None
            shown = str(text if text is not None else value)
            row = {"n": i, "kind": q.kind, "image": q.image, "question": q.question, "answered": ok,
                   "first_try": bool(attempts) and attempts[0].ok, "attempts": len(attempts),
                   "answer": shown[:200], "correct": ok and len(shown) <= MAX_ANSWER and q.correct(shown),
                   "seconds": round(secs, 2),
                   "program": attempts[-1].program if attempts else None,
                   "problems": [list(a.problems) for a in attempts]}
            rows.append(row)
            print(f"[{i:2d}/{len(qs)}] {'ok ' if row['correct'] else 'ANS' if ok else 'ERR'} "
                  f"attempts={row['attempts']} {secs:5.1f}s  {q.question}  ->  {shown[:70]!r}", flush=True)
    n = len(rows)
    first = sum(r["first_try"] for r in rows)
    valid = sum(r["answered"] for r in rows)
    correct = sum(r["correct"] for r in rows)
    mean_s = sum(r["seconds"] for r in rows) / max(n, 1)
    from vistrace.agent.graph import constraint_mode

    name = getattr(agent.llm, "name", args.llm)
    mode = {"typed": "typed grammar", "grammar": "program grammar", "json_schema": "JSON schema",
            "plain": "no grammar"}[constraint_mode(agent.llm, decoding)]
    summary = {"llm": name, "mode": mode, "questions": n, "valid_first_try": first, "valid_after_repair": valid,
               "correct": correct, "mean_seconds": round(mean_s, 1)}
    if args.markdown:
        print(f"| {name} | {mode} | {n} | {first} ({100 * first / n:.0f} %) | {valid} ({100 * valid / n:.0f} %) | "
              f"{correct} ({100 * correct / n:.0f} %) | {mean_s:.1f} s |")
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
