"""Reading object names the way people write them: case, '-'/'_', articles and plurals folded.

Closed-vocabulary backends (CenterNet's COCO-80, a YOLO checkpoint's names) match a query word against
their class names through these forms; synonyms are each backend's own table.
"""

from __future__ import annotations

import re


def fold(name: str) -> str:
    """A name folded for reading: lower case, '-'/'_' as spaces, single spaces."""
    return re.sub(r"\s+", " ", str(name).strip().lower().replace("-", " ").replace("_", " "))


def query_forms(query: str) -> list[str]:
    """The forms a query word may name a class by: as given (folded), without an article, singular."""
    q = re.sub(r"^(a|an|the|some) ", "", fold(query))
    forms = [q]
    if q.endswith("ies"):
        forms.append(q[:-3] + "y")
    if q.endswith("es"):
        forms.append(q[:-2])
    if q.endswith("s") and not q.endswith("ss"):
        forms.append(q[:-1])
    return forms
