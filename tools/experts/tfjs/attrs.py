"""Node attributes of a TFJS graph model, decoded from the JSON form the converter writes."""

from __future__ import annotations

import base64
from typing import Any


def _b64(text: str) -> str:
    return base64.b64decode(text).decode()


def _decode(v: dict[str, Any], default: Any) -> Any:
    if "list" in v:
        lst = v["list"]
        for kind, conv in (("i", int), ("f", float), ("s", _b64)):
            if kind in lst:
                return [conv(x) for x in lst[kind]]
        return []
    for kind, conv in (("i", int), ("f", float), ("b", bool), ("s", _b64), ("type", str)):
        if kind in v:
            return conv(v[kind])
    return default


class Attrs:
    """A node's attributes as TFJS writes them (``{"i": "2"}``, ``{"s": base64}``, ``{"list": {...}}``).

    Values are decoded on first use and kept; ``plain`` values (tests, hand-built nodes) are used as is.
    """

    def __init__(self, raw: dict[str, Any] | None = None, **plain: Any):
        self.raw = dict(raw or {})
        self.plain = plain

    def get(self, key: str, default: Any = None) -> Any:
        if key not in self.plain:
            v = self.raw.get(key)
            if v is None:
                return default
            self.plain[key] = _decode(v, default)
        return self.plain[key]
