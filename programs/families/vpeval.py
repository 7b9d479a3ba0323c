"""The VPEval evaluation set: judge text-to-image results with skill programs, explain every module.

Each item's program runs on its image; every module is one verdict with a sentence and an overlay.
Scores, per item: modules passed / modules scored, where a module that errors counts as failed and
is listed (VPEval's own ``open_ended_main.py`` drops such modules from both counts — that number is
reported beside it as ``score_errors_dropped`` so results stay comparable with published ones).
With VQA off (the default offline, VPEval's ``enable_vqa_module=False``) ``vqa`` modules are not
run and not scored; they are listed as skipped.

Metrics: ``score`` (mean item score), ``score_errors_dropped``, ``accuracy_<skill>`` (mean score of
the items of a skill) and ``accuracy_<skill>_<sub>`` (VPEval's sub-skills: left/right/above/below/
front/behind, count 1-4, bigger/smaller/same), ``accuracy_skills_mean`` (mean over skills, as VPEval
averages them), ``modules_errored``, ``modules_skipped``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from vistrace.errors import InputError, ProgramError, VistraceError
from vistrace.evaluate import EvalItem, ItemResult, ModuleNote, mean

from .vpeval_programs import SKILLS, SUB_SKILLS, Task, find_image, with_judge, with_program, without_vqa

JUDGES = ("vpeval", "geneval")
RUN_FOLDER = "trace"


def module_notes(run, folder_rel: str) -> list[ModuleNote]:
    """One note per module of a finished VPEval-style run: verdict, sentence, overlay of its step."""
    outcome = run.outcome
    if outcome is None:
        return []
    steps = run.trace.steps
    notes = []
    for m in outcome.modules:
        step = next((s for s in steps if s.line == m.line and s.col == m.col), None)
        overlay = f"{folder_rel}/{step.artifacts[0]}" if step is not None and step.artifacts else None
        sentence = m.explanation or (f"{m.module} could not run: {m.error}" if m.error else
                                     f"{m.module}: {'passed' if m.passed else 'failed'}")
        notes.append(ModuleNote(m.module, bool(m.passed), sentence, m.source, m.error, False, overlay))
    return notes


def score_notes(notes: list[ModuleNote]) -> tuple[float | None, float | None, int]:
    """(score with errors counted failed, score with errored modules dropped, modules errored)."""
    scored = [n for n in notes if not n.skipped]
    if not scored:
        return None, None, 0
    errored = sum(1 for n in scored if n.error)
    passed = sum(1 for n in scored if n.passed)
    dropped = len(scored) - errored
    return passed / len(scored), (passed / dropped if dropped else None), errored


class VPEvalSet:
    """``vistrace eval vpeval``: tasks (prompt + program) judged on images from a folder."""

    name = "vpeval"

    def __init__(self, tasks: list[Task], images: str | Path, *, judge: str = "vpeval", vqa: bool = False,
                 planner: Callable[[Task], Task] | None = None, registry=None, cache: Any = True,
                 source: str = ""):
        if judge not in JUDGES:
            raise InputError(f"--judge must be one of {', '.join(JUDGES)}, got {judge!r}")
        self.images = Path(images)
        if not self.images.is_dir():
            raise InputError(f"--images {self.images}: no such folder")
        self.tasks = {t.id: t for t in tasks}
        self.judge, self.vqa, self.planner = judge, vqa, planner
        self.registry, self.cache, self.source = registry, cache, source

    def items(self) -> list[EvalItem]:
        return [EvalItem(t.id, {"prompt": t.prompt}, meta={"skill": t.skill, "sub": t.sub}) for t in self.tasks.values()]

    def config(self) -> dict[str, Any]:
        return {"judge": self.judge, "vqa": self.vqa, "images": str(self.images), "prompts": self.source,
                "planner": "rules, then LLM" if self.planner is not None else "rules"}

    # ------------------------------------------------------------------ one item
    def plan(self, task: Task) -> Task:
        """The task with its program: given, built from annotations, or written by the planner."""
        if task.program:
            return task
        if self.planner is None:
            from .prompt_rules import rules_program

            plan = rules_program(task.prompt)
            if plan is None:
                raise InputError(f"no program for prompt {task.prompt!r}: it fits no template of the "
                                 "deterministic planner", hint="pass --llm SPEC to let the LLM planner write it")
            return with_program(task, plan.program, "rules", plan.skill, plan.sub)
        return self.planner(task)

    def evaluate(self, item: EvalItem, folder: Path) -> ItemResult:
        from vistrace import run as run_program
        from vistrace.values import Image

        t0 = time.perf_counter()
        task = self.tasks[item.id]
        fields: dict[str, Any] = {"prompt": task.prompt, "skill": task.skill or "", "sub": task.sub or ""}
        try:
            task = self.plan(task)
            image_path = find_image(self.images, task)
        except VistraceError as exc:
            return ItemResult(item.id, score=0.0, fields=fields, error=f"{type(exc).__name__}: {exc}")
        fields.update(skill=task.skill or "", sub=task.sub or "", image=image_path.name, planner=task.planner)
        program = with_judge(task.program, self.judge)
        skipped: list = []
        if not self.vqa:
            program, skipped = without_vqa(program)
        fields["program"] = program
        notes_skipped = [ModuleNote(s.module, False, "not run: VQA is off (pass --vqa with an ask backend)",
                                    s.source, skipped=True) for s in skipped]
        if not program.strip():
            return ItemResult(item.id, score=None, fields=fields, modules=notes_skipped,
                              metrics={"modules_skipped": len(skipped)},
                              error="every module is a vqa module and VQA is off: nothing to score")
        try:
            run = run_program(program, registry=self.registry, cache=self.cache, name=f"vpeval-{item.id}",
                              image=Image.open(image_path))
        except ProgramError as exc:
            problems = "; ".join(str(p) for p in exc.problems[:3]) or str(exc)
            return ItemResult(item.id, score=0.0, fields=fields, modules=notes_skipped,
                              error=f"program rejected: {problems}")
        run.save(folder / RUN_FOLDER)
        notes = module_notes(run, RUN_FOLDER) + notes_skipped
        score, dropped, errored = score_notes(notes)
        error = None if run.ok else f"{type(run.error).__name__}: {run.error}"
        metrics = {"modules": len(notes) - len(skipped), "modules_errored": errored, "modules_skipped": len(skipped)}
        if dropped is not None:
            metrics["score_errors_dropped"] = dropped
        return ItemResult(item.id, score=score if score is not None else 0.0, metrics=metrics, fields=fields,
                          modules=notes, runs=[RUN_FOLDER], error=error, seconds=time.perf_counter() - t0)

    # ------------------------------------------------------------------ aggregate
    def metrics(self, results: list[ItemResult]) -> dict[str, float]:
        return vpeval_metrics(results)


def vpeval_metrics(results: list[ItemResult]) -> dict[str, float]:
    """The set's figures (see the module docstring)."""
    scored = [r for r in results if r.score is not None]
    out: dict[str, float] = {"score": mean(r.score for r in scored),
                             "score_errors_dropped": mean(r.metrics["score_errors_dropped"] for r in scored
                                                          if "score_errors_dropped" in r.metrics),
                             "items_scored": float(len(scored)),
                             "modules_errored": float(sum(r.metrics.get("modules_errored", 0) for r in results)),
                             "modules_skipped": float(sum(r.metrics.get("modules_skipped", 0) for r in results))}
    skills = [s for s in SKILLS if any(r.fields.get("skill") == s for r in scored)]
    for skill in skills:
        mine = [r for r in scored if r.fields.get("skill") == skill]
        out[f"accuracy_{skill}"] = mean(r.score for r in mine)
        for sub in SUB_SKILLS.get(skill, ()):
            subs = [r for r in mine if str(r.fields.get("sub")) == sub]
            if subs:
                out[f"accuracy_{skill}_{sub}"] = mean(r.score for r in subs)
    if skills:
        out["accuracy_skills_mean"] = mean(out[f"accuracy_{s}"] for s in skills)
    return out
