"""The GenEval evaluation set (Ghosh et al.): object, count, colour and position checks from metadata.

Each metadata line (``evaluation_metadata.jsonl``: ``tag``, ``include`` [{class, count, color?,
position?: [relation, index]}], ``exclude`` [{class, count}], ``prompt``) becomes a VPEval-style
program, so every clause is a module with a verdict, a sentence and an overlay:

- include ``{class, count}``: ``countEval(objDet(image, class, threshold=T), '>=count')``
  (GenEval: at least ``count`` detections above the confidence threshold);
- include ``color``: ``vqa(image, 'what color is the <class>?', <GenEval's 10 colours>, color)`` —
  GenEval classifies the colour with CLIP, which is not available offline; with VQA off the item
  is not scored (``unscored``) rather than judged on its other clauses;
- include ``position [rel, i]``: ``spatialEval(image, '<class of i>,<class>,<rel>', judge='geneval')``
  — GenEval's rule on the most confident box of each;
- exclude ``{class, count}``: ``countEval(objDet(image, class, threshold=T), '<count')``.

An image is correct when every clause holds (GenEval combines includes with AND and excludes with
OR). Figures as GenEval's ``summary_scores.py``: ``accuracy`` (correct images), ``accuracy_<tag>``
and ``overall`` — the mean over tags.

Thresholds: GenEval's published 0.3 (0.9 for counting) are calibrated for its Mask2Former detector.
CenterNet, the offline detector, scores true objects 0.16-0.78, so by default the detector's own
calibrated threshold is used (``threshold=0`` → the backend's default); pass ``threshold=0.3,
counting_threshold=0.9`` for the published values with a detector calibrated like GenEval's.

Images, as GenEval's ``generation/diffusers_generate.py`` writes them: ``<images>/<NNNNN>/samples/
<NNNN>.png`` with the 0-based metadata line number ``NNNNN`` (and ``<NNNNN>/metadata.jsonl``); flat
``<images>/<NNNNN>.png`` or ``<images>/<NNNNN>_<k>.png`` are accepted too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vistrace.errors import InputError
from vistrace.evaluate import EvalItem, ItemResult, mean

from .prompt_rules import COLORS
from .vpeval import VPEvalSet
from .vpeval_programs import IMAGE_SUFFIXES, Task, quote

_POSITION_WORDS = {"left of": "left", "right of": "right", "above": "above", "below": "below"}


def geneval_program(meta: dict, threshold: float = 0.0, counting_threshold: float = 0.0) -> str:
    """The VPEval-style program that checks one GenEval metadata entry (see the module docstring)."""
    try:
        tag = meta["tag"]
        includes = list(meta.get("include", []))
    except (KeyError, TypeError) as exc:
        raise InputError(f"a GenEval metadata entry needs 'tag' and 'include', got {meta!r:.120}") from exc
    t = counting_threshold if tag == "counting" else threshold
    th = f", threshold={t:g}" if t else ""
    modules = []
    for req in includes:
        cls, count = str(req["class"]), int(req.get("count", 1))
        modules.append(f"countEval(objDet(image, {quote(cls)}{th}), '>={count}')")
        if "color" in req:
            modules.append(f"vqa(image, {quote(f'what color is the {cls}?')}, {quote(','.join(COLORS))}, {quote(req['color'])})")
        if "position" in req:
            rel, index = req["position"]
            if rel not in _POSITION_WORDS or not 0 <= int(index) < len(includes):
                raise InputError(f"GenEval position {req['position']!r} of {meta.get('prompt')!r}: expected "
                                 f"[one of {', '.join(_POSITION_WORDS)}, an include index]")
            target = str(includes[int(index)]["class"])
            modules.append(f"spatialEval(image, {quote(f'{target},{cls},{_POSITION_WORDS[rel]}')}, judge='geneval')")
    for req in meta.get("exclude", []):
        modules.append(f"countEval(objDet(image, {quote(req['class'])}{th}), '<{int(req['count'])}')")
    if not modules:
        raise InputError(f"GenEval entry {meta.get('prompt')!r} has no include or exclude clause")
    return ";".join(modules)


def read_metadata(path: str | Path) -> list[dict]:
    """The entries of a GenEval ``evaluation_metadata.jsonl`` (one JSON object per line)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--metadata {path}: no such file")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{n}: not a JSON object ({exc.msg})") from exc
    return out


def geneval_images(images: Path, count: int) -> list[tuple[int, str, Path]]:
    """(metadata index, item id, image path) for every image found under GenEval's naming."""
    found = []
    for i in range(count):
        folder = images / f"{i:05d}" / "samples"
        if folder.is_dir():
            for f in sorted(folder.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((i, f"{i:05d}/{f.stem}", f))
    flat = re.compile(r"^(\d{5})(?:_(\w+))?$")
    for f in sorted(images.iterdir()) if images.is_dir() else []:
        m = flat.match(f.stem)
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and m and int(m.group(1)) < count:
            found.append((int(m.group(1)), f.stem, f))
    return found


class GenEvalSet:
    """``vistrace eval geneval``: every image judged on its metadata clauses; correct when all hold."""

    name = "geneval"

    def __init__(self, metadata: str | Path | None, images: str | Path, *, threshold: float = 0.0,
                 counting_threshold: float = 0.0, vqa: bool = False, registry=None, cache: Any = True):
        self.images = Path(images)
        if not self.images.is_dir():
            raise InputError(f"--images {self.images}: no such folder")
        self.metadata_path = str(metadata or "")
        entries = read_metadata(metadata) if metadata else self._folder_metadata()
        self.threshold, self.counting_threshold, self.vqa = threshold, counting_threshold, vqa
        tasks, self.tags = [], {}
        for index, item_id, path in geneval_images(self.images, len(entries)):
            meta = entries[index]
            program = geneval_program(meta, threshold, counting_threshold)
            tasks.append(Task(item_id, str(meta.get("prompt", "")), program, skill=str(meta["tag"]),
                              image=str(path.relative_to(self.images)), planner="geneval-metadata"))
            self.tags[item_id] = str(meta["tag"])
        if not tasks:
            raise InputError(f"no GenEval images under {self.images}",
                             hint="expected <images>/<NNNNN>/samples/<NNNN>.png or <images>/<NNNNN>.png, "
                                  "NNNNN = the 0-based metadata line")
        self.runner = VPEvalSet(tasks, self.images, vqa=vqa, registry=registry, cache=cache)

    def _folder_metadata(self) -> list[dict]:
        entries = []
        for i in range(100_000):
            f = self.images / f"{i:05d}" / "metadata.jsonl"
            if not f.is_file():
                break
            entries.append(json.loads(f.read_text(encoding="utf-8").strip().splitlines()[0]))
        if not entries:
            raise InputError(f"no --metadata given and no {self.images}/00000/metadata.jsonl",
                             hint="pass --metadata evaluation_metadata.jsonl")
        return entries

    def items(self) -> list[EvalItem]:
        return self.runner.items()

    def config(self) -> dict[str, Any]:
        return {"metadata": self.metadata_path, "images": str(self.images), "vqa": self.vqa,
                "threshold": self.threshold or "detector default",
                "counting_threshold": self.counting_threshold or "detector default"}

    def evaluate(self, item: EvalItem, folder: Path) -> ItemResult:
        result = self.runner.evaluate(item, folder)
        result.fields["tag"] = self.tags[item.id]
        if any(m.skipped for m in result.modules):
            result.score = None  # a clause could not be checked: judging on the others would inflate
            result.fields["unscored"] = "colour clause needs VQA"
        elif result.modules:
            result.score = 1.0 if all(m.passed for m in result.modules) else 0.0
        return result

    def metrics(self, results: list[ItemResult]) -> dict[str, float]:
        scored = [r for r in results if r.score is not None]
        out: dict[str, float] = {"accuracy": mean(r.score for r in scored), "items_scored": float(len(scored)),
                                 "unscored": float(len(results) - len(scored))}
        tags = []
        for tag in dict.fromkeys(r.fields.get("tag") for r in scored):
            mine = [r.score for r in scored if r.fields.get("tag") == tag]
            out[f"accuracy_{tag}"] = mean(mine)
            tags.append(out[f"accuracy_{tag}"])
        out["overall"] = mean(tags)  # GenEval summary_scores.py: the mean over tasks
        return out
