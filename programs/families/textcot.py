"""TextCoT on SROIE receipts: the evaluation set, its questions and its answer-matching rules.

``textcot_set("sroie", data)`` reads ``data/img/*.jpg`` and ``data/key/*.json`` (the ICDAR 2019 SROIE
task-3 key fields). Items: one per receipt and field (``002-total``, ``002-date``, ``002-company``), so
every question has its own run folders, verdict and latency. Each item runs

- ``textcot`` (programs/library/textcot.vp): overview, locate, zoom, answer on the crop; and
- ``baseline`` (programs/library/textcot_baseline.vp, unless ``baseline=False``): ``ask`` on the whole
  image (offline: full-image OCR, then the LLM answers from the text),

each saved as a run folder under the item folder. Each run has its own empty result cache (a tool
called twice on the same input within the run is computed once), so latencies are real.

Matching (``matches``): SROIE task 3 scores an extracted field as correct when its text equals the
ground truth (Huang et al., "ICDAR2019 Competition on Scanned Receipt OCR and Information Extraction",
2019). A question's answer is free text, so we compare what the field means, with these rules:

- total: the answer must hold exactly one amount (every number in it the same value) and it must
  equal the key's amount. Currency marks (RM, MYR, $) and thousands commas are dropped, and amounts
  compare as numbers ("RM 9.00" = "9.00" = "9"); OCR's "33. 90" reads as 33.90. The currency rule
  follows the RRC task-3 leaderboard notes: the ground-truth total is "randomly prefixed by RM"
  (rrc.cvc.uab.es, SROIE task 3 results), e.g. our keys "RM 3.90", "$8.20", "33.90".
- date: the answer must hold exactly one date, equal to the key's as (day, month, year): separators
  ``-``, ``/``, ``.`` or spaces, month numbers or names ("03 MAR 2018"), two-digit years as 20YY,
  year-first forms ("2016/05/01"). Numeric dates read day first (the receipts are Malaysian, and
  every key with both parts <= 12 writes day first, e.g. "06/01/18").
- company: upper-cased, everything but letters and digits dropped, then equal ("MR D.I.Y. (JOHOR) SDN
  BHD" = "MR DIY (JOHOR) SDN. BHD."); punctuation and spacing are where OCR differs most.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import unicodedata
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from vistrace.errors import InputError
from vistrace.evaluate.base import EvalItem, ItemResult, ModuleNote, mean

SETS = ("sroie",)
FIELDS = ("total", "date", "company")
QUESTIONS = {
    "total": "What is the total amount of this receipt?",
    "date": "What is the date on this receipt?",
    "company": "What is the name of the company that issued this receipt?",
}
MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                      "DEC"), 1)}

# --- matching rules (pure) -----------------------------------------------------------------------------

_CURRENCY = re.compile(r"\b(?:RM|MYR|USD|SGD)|[$€£¥]", re.IGNORECASE)
_AMOUNT = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(?![\d])")


def amounts(text: str) -> list[Decimal]:
    """Every amount in ``text`` as a number: currency marks and thousands commas dropped, '33. 90' -> 33.90."""
    t = _CURRENCY.sub(" ", unicodedata.normalize("NFKC", str(text)))
    t = re.sub(r"(?<=\d)\s*\.\s*(?=\d)", ".", t)
    out = []
    for whole, frac in _AMOUNT.findall(t):
        try:
            out.append(Decimal(whole.replace(",", "") + (f".{frac}" if frac else "")))
        except InvalidOperation:
            continue
    return out


def _year(y: str) -> int:
    n = int(y)
    return 2000 + n if len(y) <= 2 else n


def _valid(d: int, m: int, y: int) -> bool:
    return 1 <= d <= 31 and 1 <= m <= 12 and 1900 <= y <= 2100


_SEP = r"\s*[-/.]\s*|\s+"
_NUMERIC_YMD = re.compile(rf"(?<!\d)(\d{{4}})(?:{_SEP})(\d{{1,2}})(?:{_SEP})(\d{{1,2}})(?!\d)")
_NUMERIC_DMY = re.compile(rf"(?<!\d)(\d{{1,2}})(?:{_SEP})(\d{{1,2}})(?:{_SEP})(\d{{4}}|\d{{2}})(?!\d)")
_NAMED_DMY = re.compile(r"(?<!\d)(\d{1,2})(?:st|nd|rd|th)?[\s\-/.,]*([A-Za-z]{3,9})\.?[\s\-/.,]*(\d{4}|\d{2})(?!\d)")
_NAMED_MDY = re.compile(r"\b([A-Za-z]{3,9})\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4}|\d{2})(?!\d)")


def dates(text: str) -> list[tuple[int, int, int]]:
    """Every date in ``text`` as (year, month, day); numeric dates day first unless the year comes first."""
    t = unicodedata.normalize("NFKC", str(text))
    found: list[tuple[int, tuple[int, int, int]]] = []
    taken: list[tuple[int, int]] = []

    def add(span: tuple[int, int], d: int, m: int, y: int) -> None:
        if _valid(d, m, y) and not any(a < span[1] and span[0] < b for a, b in taken):
            found.append((span[0], (y, m, d)))
            taken.append(span)

    for m in _NUMERIC_YMD.finditer(t):
        add(m.span(), int(m.group(3)), int(m.group(2)), int(m.group(1)))
    for m in _NUMERIC_DMY.finditer(t):
        add(m.span(), int(m.group(1)), int(m.group(2)), _year(m.group(3)))
    for m in _NAMED_DMY.finditer(t):
        month = MONTHS.get(m.group(2)[:3].upper())
        if month:
            add(m.span(), int(m.group(1)), month, _year(m.group(3)))
    for m in _NAMED_MDY.finditer(t):
        month = MONTHS.get(m.group(1)[:3].upper())
        if month:
            add(m.span(), int(m.group(2)), month, _year(m.group(3)))
    return [d for _, d in sorted(found)]  # in the order they are written


def company_key(text: str) -> str:
    """A company name for comparison: NFKC, upper-case, letters and digits only."""
    return re.sub(r"[^0-9A-Z]", "", unicodedata.normalize("NFKC", str(text)).upper())


def matches(field: str, answer: str, expected: str) -> bool:
    """Whether ``answer`` gives the key field ``expected`` under the rules of the module docstring."""
    if field == "total":
        want, got = amounts(expected), set(amounts(answer))
        return len(want) == 1 and len(got) == 1 and got == {want[0]}
    if field == "date":
        want, got = dates(expected), set(dates(answer))
        return len(want) == 1 and len(got) == 1 and got == {want[0]}
    if field in ("company", "address"):
        return bool(company_key(expected)) and company_key(answer) == company_key(expected)
    raise InputError(f"no matching rule for field {field!r}", hint=f"fields: {', '.join(FIELDS)}")


# --- the evaluation set --------------------------------------------------------------------------------

def _program(name: str) -> str:
    from vistrace.programs import library

    return library()[name]


def _registry(llm: str | None):
    """The default tools and backends; with ``llm``, the offline TextCoT backends use that LLM."""
    from vistrace.tools import default_registry

    if llm is None:
        return default_registry()
    from vistrace.tools import Registry
    from vistrace.tools.adapters import register_adapters
    from vistrace.tools.builtin import register_builtin
    from vistrace.tools.experts import register_experts
    from vistrace.tools.experts import textcot_offline as offline

    reg = Registry()
    register_builtin(reg)
    register_experts(reg)
    register_adapters(reg)
    mine = {"caption": offline.OfflineCaption(llm), "locate": offline.OfflineLocate(llm), "ask": offline.OfflineAsk(llm)}
    for name, backend in mine.items():
        t = reg.get(name)
        t.backends[:] = [b for b in t.backends if b.name != backend.name] + [backend]
    return reg


class SroieTextCoT:
    """TextCoT vs the no-zoom baseline on SROIE receipts: one item per receipt and key field."""

    def __init__(self, data: Path, *, llm: str | None = None, baseline: bool = True,
                 fields: list[str] | None = None, experts: str | None = None):
        self.data = Path(data)
        self.llm = llm
        self.experts = experts
        self.baseline = baseline
        self.fields = list(fields) if fields else list(FIELDS)
        self.name = "textcot-sroie"
        self._reg = None

    def registry(self):
        if self._reg is None:
            self._reg = _registry(self.llm)
            if self.experts:  # the server's OCR, caption, locate and ask answer; --llm covers what it lacks
                from vistrace.serve import remote_registry

                self._reg = remote_registry(self.experts, base=self._reg)
        return self._reg

    def items(self) -> list[EvalItem]:
        out = []
        for img in sorted((self.data / "img").glob("*.jpg")):
            key_file = self.data / "key" / f"{img.stem}.json"
            if not key_file.is_file():
                raise InputError(f"SROIE receipt {img.name} has no key file {key_file}",
                                 hint="each img/NAME.jpg needs key/NAME.json with company, date, address, total")
            key = json.loads(key_file.read_text(encoding="utf-8"))
            for field in self.fields:
                if field not in key:
                    raise InputError(f"{key_file} has no '{field}' field", hint=f"fields there: {', '.join(key)}")
                out.append(EvalItem(f"{img.stem}-{field}", {"image": str(img), "question": QUESTIONS[field]},
                                    expected=str(key[field]), meta={"receipt": img.stem, "field": field}))
        return out

    def _one(self, program: str, item: EvalItem, folder: Path, label: str) -> tuple[str | None, str | None, float]:
        import vistrace
        from vistrace.trace.cache import ResultCache

        with tempfile.TemporaryDirectory(prefix="vistrace-textcot-") as scratch:
            # a cache for this one run only: a tool called twice on the same input within the run (the
            # full-image OCR for caption and locate) is computed once; nothing is reused across runs
            t0 = time.perf_counter()
            run = vistrace.run(program, registry=self.registry(), cache=ResultCache(scratch),
                               image=Path(item.inputs["image"]), question=item.inputs["question"])
            seconds = time.perf_counter() - t0
        run.save(folder / label)
        if not run.ok:
            return None, f"{type(run.error).__name__}: {run.error}", seconds
        return str(run.value), None, seconds

    def evaluate(self, item: EvalItem, folder: Path) -> ItemResult:
        field = item.meta["field"]
        result = ItemResult(item.id, fields={"field": field, "expected": item.expected})
        variants = [("textcot", _program("textcot"))]
        if self.baseline:
            variants.append(("baseline", _program("textcot_baseline")))
        for label, program in variants:
            answer, error, seconds = self._one(program, item, folder, label)
            ok = answer is not None and matches(field, answer, item.expected)
            suffix = "" if label == "textcot" else "_baseline"
            result.metrics[f"correct{suffix}"] = float(ok)
            result.metrics[f"latency{suffix}_s"] = round(seconds, 3)
            result.fields[label] = answer if answer is not None else f"error: {error}"
            verdict = "matches" if ok else "does not match"
            sentence = (f"{label} answered {answer!r}, which {verdict} the key {item.expected!r} ({field} rule)"
                        if answer is not None else f"{label} failed: {error}")
            result.modules.append(ModuleNote(label, ok, sentence, source=item.inputs["question"], error=error))
            result.runs.append(label)
        result.score = result.metrics["correct"]
        return result

    def metrics(self, results: list[ItemResult]) -> dict[str, float]:
        def field_of(r: ItemResult) -> str:
            return str(r.fields.get("field") or r.id.rsplit("-", 1)[-1])

        out: dict[str, float] = {}
        for suffix in ("",) + (("_baseline",) if self.baseline else ()):
            out[f"accuracy{suffix}"] = mean(r.metrics.get(f"correct{suffix}", 0.0) for r in results)
            for field in self.fields:
                mine = [r for r in results if field_of(r) == field]
                out[f"accuracy{suffix}_{field}"] = mean(r.metrics.get(f"correct{suffix}", 0.0) for r in mine)
            out[f"latency{suffix}_s"] = mean(r.metrics[f"latency{suffix}_s"] for r in results
                                             if f"latency{suffix}_s" in r.metrics)
        return {k: round(v, 4) for k, v in out.items()}

    def config(self) -> dict[str, Any]:
        reg = self.registry()
        chosen: dict[str, Any] = {}
        for name in ("caption", "locate", "ask", "ocr"):
            try:
                backend, why = reg.get(name).select_backend({})
                chosen[name] = {"backend": backend.name, "model": backend.model, "reason": why}
            except Exception as exc:  # noqa: BLE001 - an unavailable tool is reported, not hidden
                chosen[name] = {"backend": None, "error": str(exc)}
        from vistrace.tools.experts.textcot_offline import llm_spec

        return {"data": str(self.data), "llm": llm_spec(self.llm), "backends": chosen, "fields": self.fields,
                "baseline": self.baseline, "items": "one per receipt and field",
                "matching": "programs/families/textcot.py (total: one amount equal as a number, currency dropped; "
                            "date: one date equal as day/month/year; company: letters and digits equal)",
                "cache": "per run only"}


def textcot_set(set_name: str, data: Path, *, llm: str | None = None, baseline: bool = True,
                fields: list[str] | None = None, experts: str | None = None) -> SroieTextCoT:
    """The TextCoT evaluation set ``set_name`` (only ``sroie``) over the data folder ``data``.

    ``llm``: the offline backends' LLM spec (default: setting / $VISTRACE_LLM / local); ``baseline``:
    also run the no-zoom baseline; ``fields``: a subset of total, date, company; ``experts``: a
    ``vistrace serve`` URL whose expert tools (OCR, caption, locate, ask) answer instead of local ones.
    """
    if set_name not in SETS:
        raise InputError(f"unknown TextCoT set {set_name!r}", hint=f"sets: {', '.join(SETS)}")
    data = Path(data)
    missing = [p for p in (data / "img", data / "key") if not p.is_dir()]
    if missing:
        raise InputError(f"SROIE data not found: {', '.join(str(p) for p in missing)} missing",
                         hint="give the folder holding img/*.jpg and key/*.json, e.g. ../shared/data/sroie")
    if fields is not None:
        bad = [f for f in fields if f not in FIELDS]
        if bad or not fields:
            raise InputError(f"unknown SROIE field(s) {', '.join(map(repr, bad)) or '(none given)'}",
                             hint=f"fields: {', '.join(FIELDS)}")
    if llm is not None:
        from vistrace.agent.llm import make_llm

        make_llm(llm)  # an invalid spec is an InputError now, not an error in every item
    if experts:
        from vistrace.serve import RemoteTools

        RemoteTools(experts)  # likewise a URL that is not http(s)
    return SroieTextCoT(data, llm=llm, baseline=baseline, fields=fields, experts=experts)


__all__ = ["FIELDS", "QUESTIONS", "SroieTextCoT", "amounts", "company_key", "dates", "matches", "textcot_set"]
