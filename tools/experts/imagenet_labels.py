"""The 1000 ImageNet-1k (ILSVRC-2012) class names, in the index order of the classifier outputs.

``data/imagenet_classes.txt`` holds one name per line, line ``i`` = output ``i``. Source: the index
list in ``pytorch/hub`` ``imagenet_classes.txt`` ("0, tench" ... "999, toilet_tissue", extracted from
Keras' ``imagenet_class_index.json``: the first WordNet lemma of each synset, sorted by wnid), with
underscores written as spaces — the same names torchvision's ImageNet weights carry in their meta
(so "crane" (134 bird, 517 machine) and "maillot" (638, 639) appear twice, as there).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DATA_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"
COUNT = 1000
# a few anchors checked on load, so a truncated or shifted file fails loudly rather than mislabelling
ANCHORS = {0: "tench", 207: "golden retriever", 281: "tabby", 282: "tiger cat", 285: "Egyptian cat",
           417: "balloon", 504: "coffee mug", 967: "espresso", 968: "cup", 999: "toilet tissue"}


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The class names, index = classifier output; raises ValueError when the data file is damaged."""
    names = tuple(line.strip() for line in DATA_FILE.read_text(encoding="utf-8").splitlines() if line.strip())
    if len(names) != COUNT:
        raise ValueError(f"{DATA_FILE} has {len(names)} class names, expected {COUNT}")
    wrong = {i: names[i] for i, name in ANCHORS.items() if names[i] != name}
    if wrong:
        raise ValueError(f"{DATA_FILE} is out of order: {wrong} (expected {ANCHORS})")
    return names
