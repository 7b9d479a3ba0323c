"""The VPGen loop closed: generate from a prompt (objects -> layout -> image), then judge it with VPEval.

``vistrace eval vpgen --prompts FILE --out DIR`` runs ``programs/library/vpgen.vp`` for every prompt
and scores the result with the prompt's VPEval skill program (deterministic planner, or the LLM
planner with ``--llm``):

- with a generator configured (``--generator gligen``, diffusers GLIGEN weights you bring), VPEval
  judges the generated image with the usual experts;
- offline (``--generator sketch``, the default when no generator is available) there is no image
  to judge, so the checks run on the layout boxes themselves: ``detect`` is answered by the layout
  (backend ``layout``) and only what a layout can show is scored — objects, counts, left/right/
  above/below and sizes. Text, colour/VQA and depth (front/behind) modules are listed as skipped,
  and the report says that the layout, not an image, was judged.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from vistrace.errors import InputError, ProgramError, VistraceError
from vistrace.evaluate import EvalItem, ItemResult, ModuleNote, mean
from vistrace.tools.backends import Availability, Backend
from vistrace.values import Detections, Image

from .prompt_rules import singular
from .vpeval import module_notes, score_notes, vpeval_metrics
from .vpeval_programs import Task, load_tasks, statements

GENERATORS = ("auto", "gligen", "sketch")
LAYOUT_MODULES = ("objectEval", "countEval", "spatialEval", "scaleEval")
LAYOUT_RELATIONS = ("left", "right", "above", "below")


class LayoutDetector(Backend):
    """``detect`` answered by a planned layout: the boxes whose label names the queried object."""

    tool = "detect"
    name = "layout"
    model = "the planned layout boxes"
    version = "1"
    priority = 1000

    def __init__(self, layout: Detections):
        self.layout = layout

    def availability(self) -> Availability:
        return Availability(True, "judging the layout itself (no generated image)")

    def suits(self, args: dict[str, Any]) -> tuple[bool, str]:
        return True, "layout: the planned boxes stand in for detections (offline VPGen check)"

    def run(self, image: Image, labels: list[str], threshold: float = 0.0, **_: Any) -> Detections:
        want = {singular(lab.lower().strip()): lab for lab in labels}
        boxes = [image.from_root(b.replace(label=want[singular(b.label)])) for b in self.layout
                 if singular(b.label) in want]
        return Detections(boxes, query=",".join(labels), image_size=image.size)


def layout_registry(layout: Detections):
    """The built-in tools with ``detect`` answered only by the layout (no other expert)."""
    from vistrace.tools import Registry
    from vistrace.tools.builtin import register_builtin

    reg = Registry()
    register_builtin(reg)
    reg.add_backend(LayoutDetector(layout))
    return reg


def layout_checkable(program: str) -> tuple[str, list]:
    """The modules a layout can answer, and the others (text, VQA, depth relations) to list as skipped."""
    from vistrace.tools.builtin.relations import vpeval_spatial_keyword

    kept, skipped = [], []
    for s in statements(program):
        ok = s.module in LAYOUT_MODULES
        if ok and s.module == "spatialEval":
            ok = vpeval_spatial_keyword(_relation_of(s.source)) in LAYOUT_RELATIONS
        (kept if ok else skipped).append(s)
    return ";".join(s.source for s in kept), skipped


def _relation_of(call_source: str) -> str:
    """The relation of a ``spatialEval(image, 'A,B,relation', ...)`` call ('' when it has none)."""
    import ast

    call = ast.parse(call_source, mode="eval").body
    arg = call.args[1] if isinstance(call, ast.Call) and len(call.args) > 1 else None
    text = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else ""
    return text.rsplit(",", 1)[-1] if text.count(",") == 2 else ""


def generator_available(registry=None) -> bool:
    """Whether some backend of ``generate`` can run here."""
    from vistrace.tools import default_registry

    reg = registry or default_registry()
    return any(b.availability().ok for b in reg.get("generate").backends)


class VPGenSet:
    """``vistrace eval vpgen``: generate each prompt with VPGen, judge it with VPEval."""

    name = "vpgen"

    def __init__(self, tasks: list[Task], *, generator: str = "auto", planner=None, registry=None,
                 cache: Any = True, source: str = ""):
        if generator not in GENERATORS:
            raise InputError(f"--generator must be one of {', '.join(GENERATORS)}, got {generator!r}")
        if generator == "auto":
            generator = "gligen" if generator_available(registry) else "sketch"
        self.generator, self.planner, self.registry, self.cache, self.source = generator, planner, registry, cache, source
        self.tasks = {t.id: t for t in tasks}

    def items(self) -> list[EvalItem]:
        return [EvalItem(t.id, {"prompt": t.prompt}) for t in self.tasks.values()]

    def config(self) -> dict[str, Any]:
        judged = "the generated image (VPEval experts)" if self.generator == "gligen" else \
            "the layout boxes themselves (no generator configured; text, VQA and depth modules skipped)"
        return {"generator": self.generator, "judged": judged, "prompts": self.source,
                "planner": "rules, then LLM" if self.planner is not None else "rules"}

    def _program(self, task: Task) -> Task:
        from .prompt_rules import rules_program
        from .vpeval_programs import with_program

        if task.program:
            return task
        if self.planner is not None:
            return self.planner(task)
        plan = rules_program(task.prompt)
        if plan is None:
            raise InputError(f"no VPEval program for prompt {task.prompt!r}", hint="pass --llm SPEC")
        return with_program(task, plan.program, "rules", plan.skill, plan.sub)

    def evaluate(self, item: EvalItem, folder: Path) -> ItemResult:
        from vistrace import run as run_program
        from vistrace.programs import library

        t0 = time.perf_counter()
        task = self.tasks[item.id]
        fields: dict[str, Any] = {"prompt": task.prompt, "generator": self.generator}
        gen = run_program(library()["vpgen"], registry=self.registry, cache=self.cache, name=f"vpgen-{item.id}",
                          prompt=task.prompt, generator=self.generator)
        gen.save(folder / "generate")
        layout = next((gen.recorder.values.get(s.id) for s in gen.trace.steps if s.tool == "plan_layout"), None)
        if layout is not None:
            fields["layout"] = layout.summary()
        if not gen.ok:
            return ItemResult(item.id, score=0.0, fields=fields, runs=["generate"],
                              error=f"generation failed: {type(gen.error).__name__}: {gen.error}",
                              metrics={"generated": 0.0})
        fields["objects"] = next((str(gen.recorder.values.get(s.id)) for s in gen.trace.steps
                                  if s.tool == "plan_objects"), "")
        try:
            task = self._program(task)
        except (InputError, ProgramError) as exc:
            return ItemResult(item.id, score=0.0, fields=fields, runs=["generate"], error=str(exc),
                              metrics={"generated": 1.0})
        program, skipped = task.program, []
        registry = self.registry
        if self.generator == "sketch":
            program, skipped = layout_checkable(program)
            registry = layout_registry(layout)
        fields.update(skill=task.skill or "", sub=task.sub or "", program=program)
        notes_skipped = [ModuleNote(s.module, False, "not checkable on layout boxes (no generated image)", s.source,
                                    skipped=True) for s in skipped]
        if not program:
            return ItemResult(item.id, score=None, fields=fields, modules=notes_skipped, runs=["generate"],
                              metrics={"generated": 1.0}, error="nothing a layout can show to check")
        try:
            check = run_program(program, registry=registry, cache=False if self.generator == "sketch" else self.cache,
                                name=f"vpgen-check-{item.id}", image=gen.value)
        except VistraceError as exc:
            return ItemResult(item.id, score=0.0, fields=fields, runs=["generate"], error=f"check rejected: {exc}")
        check.save(folder / "check")
        notes = module_notes(check, "check") + notes_skipped
        score, dropped, errored = score_notes(notes)
        metrics = {"generated": 1.0, "modules_errored": errored, "modules_skipped": len(skipped),
                   "latency_s": time.perf_counter() - t0}
        if dropped is not None:
            metrics["score_errors_dropped"] = dropped
        return ItemResult(item.id, score=score, fields=fields, modules=notes, runs=["generate", "check"],
                          metrics=metrics, seconds=time.perf_counter() - t0)

    def metrics(self, results: list[ItemResult]) -> dict[str, float]:
        out = vpeval_metrics(results)
        for key, names in (("relations_held", ("spatialEval", "scaleEval")), ("counts_held", ("countEval",))):
            judged = [m for r in results for m in r.modules if m.module in names and not m.skipped]
            if judged:  # the share of the prompt's relations (counts) the layout or image satisfies
                out[key] = mean(float(m.passed) for m in judged)
        out["generated"] = mean(r.metrics.get("generated", 0.0) for r in results)
        out["latency_s"] = mean(r.metrics["latency_s"] for r in results if "latency_s" in r.metrics)
        return out


def vpgen_set(prompts: str | Path, **kwargs) -> VPGenSet:
    """The VPGen set for a prompts file (any format :func:`load_tasks` reads)."""
    return VPGenSet(load_tasks(prompts), source=str(prompts), **kwargs)
