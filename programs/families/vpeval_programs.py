"""VPEval programs: read the published prompt files, build each item's skill program, transform it.

Formats read by :func:`load_tasks` (detected from the content):

- VPEval skill-based files (``data/skill_based/<skill>_new.json``: ``{"data": [{"id", "text",
  "objects": [{"coconame", "relation"?, "scale"?}]}]}``): the program is built exactly as VPEval's
  ``src/skill_based_main.py`` does (object: objectEval of the first object; count: countEval of
  the first object's detections against the number of objects; spatial: spatialEval on the first
  two objects with the last object's relation before '_'; scale: scaleEval with its ``scale``;
  text: textEval of the quoted text). The skill is the id's prefix; sub-skills as VPEval counts them.
- VPEval open-ended files: ``{id: program}`` (``all_evaluation_programs.json``) or
  ``{id: {"prompt", "code", "image_path"}}`` (the model-specific prompt files).
- Plain prompts: a JSON list of strings or of ``{"id", "prompt", "program"?, "image"?}`` objects,
  or a text file with one prompt per line (T2I-CompBench's lists). Their programs come from the
  deterministic planner (:mod:`.prompt_rules`) or, for prompts no template fits, the LLM planner.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, replace
from pathlib import Path

from vistrace.errors import InputError

SKILLS = ("object", "count", "spatial", "scale", "text")
# the sub-skills VPEval's skill_based_main.py breaks accuracy down by
SUB_SKILLS = {"spatial": ("left", "right", "below", "above", "front", "behind"), "count": ("1", "2", "3", "4"),
              "scale": ("bigger", "smaller", "same")}
MODULES = ("objectEval", "countEval", "spatialEval", "scaleEval", "textEval", "vqa")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


@dataclass(frozen=True)
class Task:
    """One prompt to judge: its program (None until planned), skill and sub-skill, and image hint."""

    id: str
    prompt: str
    program: str | None = None
    skill: str | None = None
    sub: str | None = None
    image: str | None = None  # a path relative to the images folder, when the file names one
    planner: str = "given"    # where the program came from: given | vpeval-skill | rules | llm


def quote(text: str) -> str:
    """A VPEval program string literal for ``text``: apostrophes (which would end VPEval's '...'
    strings) and backslashes dropped, outer spaces trimmed."""
    return "'" + str(text).replace("\\", " ").replace("'", "").strip() + "'"


def skill_task(entry: dict) -> Task:
    """The task of one VPEval skill-based entry, its program built as VPEval's skill_based_main.py does."""
    try:
        item_id, prompt, objects = str(entry["id"]), str(entry["text"]), list(entry["objects"])
    except (KeyError, TypeError) as exc:
        raise InputError(f"a VPEval skill-based entry needs 'id', 'text' and 'objects', got {entry!r:.120}") from exc
    skill = item_id.split("_")[0]
    labels = [str(o["coconame"]) for o in objects]
    sub = None
    if skill == "object" and labels:
        program = f"objectEval(image, {quote(labels[0])})"
    elif skill == "count" and labels:
        program = f"countEval(objDet(image, {quote(labels[0])}), '=={len(labels)}')"
        sub = str(len(labels))
    elif skill == "spatial" and len(labels) >= 2 and objects[-1].get("relation"):
        sub = str(objects[-1]["relation"]).split("_")[0]
        program = f"spatialEval(image, {quote(f'{labels[0]},{labels[1]},{sub}')})"
    elif skill == "scale" and len(labels) >= 2 and objects[-1].get("scale"):
        sub = str(objects[-1]["scale"])
        program = f"scaleEval(image, {quote(f'{labels[0]},{labels[1]},{sub}')})"
    elif skill == "text" and prompt.count("'") >= 2:
        program = f"textEval(ocr(image), {quote(prompt.split(chr(39))[1])})"
    else:
        raise InputError(f"VPEval skill-based entry {item_id!r}: cannot build a {skill!r} program from "
                         f"{len(labels)} objects and text {prompt!r}",
                         hint=f"skills are {', '.join(SKILLS)}; the id starts with the skill (e.g. count_val_000001)")
    return Task(item_id, prompt, program, skill, sub, planner="vpeval-skill")


def _from_json(data, path: Path) -> list[Task]:
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        return [skill_task(e) for e in data["data"]]
    if isinstance(data, dict):
        tasks = []
        for key, value in data.items():
            if isinstance(value, str):
                tasks.append(Task(str(key), str(key), value, planner="given"))
            elif isinstance(value, dict) and ("code" in value or "prompt" in value):
                tasks.append(Task(str(key), str(value.get("prompt", key)), value.get("code"),
                                  image=value.get("image_path"), planner="given" if value.get("code") else "rules"))
            else:
                raise InputError(f"{path}: entry {key!r} is neither a program nor {{'prompt', 'code', 'image_path'}}")
        return tasks
    if isinstance(data, list):
        tasks = []
        for i, value in enumerate(data):
            if isinstance(value, str):
                tasks.append(Task(f"{i:05d}", value))
            elif isinstance(value, dict) and "prompt" in value:
                tasks.append(Task(str(value.get("id", f"{i:05d}")), str(value["prompt"]), value.get("program"),
                                  value.get("skill"), value.get("sub"), value.get("image"),
                                  planner="given" if value.get("program") else "rules"))
            else:
                raise InputError(f"{path}: item {i} is neither a prompt nor an object with a 'prompt'")
        return tasks
    raise InputError(f"{path}: expected VPEval skill-based JSON ({{'data': [...]}}), open-ended JSON "
                     "({id: program}) or a list of prompts")


def load_tasks(path: str | Path) -> list[Task]:
    """Every task of a prompts file (see the module docstring for the formats)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--prompts {path}: no such file")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}:{exc.colno})") from exc
        return _from_json(data, path)
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    return [Task(f"{i:05d}", p) for i, p in enumerate(prompts)]


def tasks_from_image_names(images: Path) -> list[Task]:
    """Tasks for a folder of images named by prompt, T2I-CompBench style: ``<prompt>_<NNNNNN>.png``."""
    tasks = []
    for f in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        stem = f.stem
        prompt = stem.rsplit("_", 1)[0] if "_" in stem and stem.rsplit("_", 1)[1].isdigit() else stem
        tasks.append(Task(stem, prompt, image=f.name))
    return tasks


def find_image(images: Path, task: Task) -> Path:
    """The image file of a task. Looked up, in order: the path the prompts file names; VPEval's
    skill-based layout ``<images>/<skill>/<id>.png``; ``<images>/<id>.<ext>``; T2I-CompBench's
    ``<images>/<prompt>_<NNNNNN>.png``."""
    candidates: list[Path] = []
    if task.image:
        candidates.append(images / task.image)
    for suffix in IMAGE_SUFFIXES:
        if task.skill:
            candidates.append(images / task.skill / f"{task.id}{suffix}")
        candidates.append(images / f"{task.id}{suffix}")
    for c in candidates:
        if c.is_file():
            return c
    by_prompt = sorted(images.glob(f"{_glob_escape(task.prompt)}_*"))
    by_prompt = [p for p in by_prompt if p.suffix.lower() in IMAGE_SUFFIXES and p.stem.rsplit("_", 1)[1].isdigit()]
    if by_prompt:
        return by_prompt[0]
    raise InputError(f"no image for item {task.id!r} in {images}",
                     hint=f"looked for {', '.join(str(c.relative_to(images)) for c in candidates[:3])} and "
                          f"'{task.prompt}_<NNNNNN>.png' (see docs/results.md, image naming)")


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in text)


# program transforms -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One top-level module call of a VPEval program, as written."""

    module: str
    source: str
    col: int


def statements(source: str) -> list[Statement]:
    """The top-level statements of a VPEval program (``;``-separated calls), with their module names."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the checker reports it with line:col when the program is run
    out = []
    for node in tree.body:
        call = getattr(node, "value", None)
        name = call.func.id if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) else "?"
        out.append(Statement(name, ast.get_source_segment(source, node) or "", node.col_offset + 1))
    return out


def without_vqa(source: str) -> tuple[str, list[Statement]]:
    """The program without its ``vqa`` modules (VPEval's ``enable_vqa_module=False``), and those removed."""
    stmts = statements(source)
    if not stmts or not any(s.module == "vqa" for s in stmts):
        return source, []
    kept = [s for s in stmts if s.module != "vqa"]
    return _separator(source).join(s.source for s in kept), [s for s in stmts if s.module == "vqa"]


def _separator(source: str) -> str:
    return "\n" if "\n" in source.strip() else ";"


def with_judge(source: str, judge: str) -> str:
    """The program with ``judge=...`` on every spatialEval call that names none (VPEval's rule is the default)."""
    if judge == "vpeval":
        return source
    stmts = statements(source)
    if not stmts:
        return source
    parts = []
    for s in stmts:
        text = s.source
        if s.module == "spatialEval" and "judge=" not in text and text.rstrip().endswith(")"):
            text = text.rstrip()[:-1].rstrip() + f", judge={quote(judge)})"
        parts.append(text)
    return _separator(source).join(parts)


def with_program(task: Task, program: str, planner: str, skill: str | None = None, sub: str | None = None) -> Task:
    """The task with a planned program."""
    return replace(task, program=program, planner=planner, skill=task.skill or skill, sub=task.sub or sub)
