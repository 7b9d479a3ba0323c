"""A small executor for TensorFlow.js graph models (``model.json`` + ``.bin``), in our own code on torch.

``Graph.load(path, device)`` parses the model and its weights; ``graph.run({input: array}, [outputs])``
computes the requested outputs. Ops are in :mod:`.ops`, weight decoding in :mod:`.weights`.
Names are imported on first use, so importing this package (and the backends) does not load torch.
"""

from __future__ import annotations

_EXPORTS = {
    "Graph": "graph", "parse_ref": "graph",
    "OPS": "ops", "Attrs": "ops", "UnsupportedOp": "ops", "same_padding": "ops",
    "GraphModelFile": "weights", "ModelFormatError": "weights", "load_graph_model": "weights",
    "read_weights": "weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module}", __name__), name)
