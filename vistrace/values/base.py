"""The contract every value type keeps: summarize, serialize, draw, and declare what programs may touch."""

from __future__ import annotations

from typing import Any, ClassVar


class Value:
    """Base of the immutable values that tools return and programs handle.

    ``public`` lists the attribute and method names a program may use; everything else
    (and every name starting with ``_``) is rejected by the sandbox before running.
    """

    public: ClassVar[frozenset[str]] = frozenset()
    type_name: ClassVar[str] = "Value"

    def summary(self) -> str:  # pragma: no cover - every subclass overrides
        return self.type_name

    def to_json(self) -> dict[str, Any]:  # pragma: no cover - every subclass overrides
        return {"type": self.type_name}

    def draw(self, canvas):
        """Draw this value onto a PIL image (in root-image coordinates) and return the new image."""
        return canvas.copy()

    def __setattr__(self, name, value):  # values are immutable after construction
        if getattr(self, "_frozen", False):
            raise AttributeError(f"{self.type_name} is immutable; '{name}' cannot be set")
        object.__setattr__(self, name, value)

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)
