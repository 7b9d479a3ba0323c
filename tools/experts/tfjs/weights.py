"""Reading a TensorFlow.js graph model: ``model.json`` (topology + weights manifest) and its ``.bin`` shards.

The manifest is a list of groups; each group names its shard files (``paths``, concatenated in
order) and the weights stored in them, back to back: ``name``, ``shape``, ``dtype`` and, for
quantized weights, ``quantization``:

- ``{"dtype": "float16"}``: stored as IEEE half floats, widened to float32;
- ``{"dtype": "uint8" | "uint16", "scale": s, "min": m}``: stored as integers q, value = q * s + m.

Everything else is stored raw in its own ``dtype`` (float32, int32, bool).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

_RAW = {"float32": np.float32, "int32": np.int32, "bool": np.bool_, "uint8": np.uint8}
_QUANT = {"float16": np.float16, "uint8": np.uint8, "uint16": np.uint16}


class ModelFormatError(ValueError):
    """The model.json or its weights do not describe a graph model we can read."""


@dataclass
class GraphModelFile:
    """A parsed TFJS graph model: its nodes, signature and weights (numpy arrays by name)."""

    path: Path
    nodes: list[dict[str, Any]]
    weights: dict[str, np.ndarray]
    inputs: list[str] = field(default_factory=list)   # Placeholder names, in graph order
    outputs: list[str] = field(default_factory=list)  # signature outputs ("name" or "name:1"), if stated
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return int(sum(w.nbytes for w in self.weights.values()))


def _decode(buf: memoryview, spec: dict[str, Any], where: str) -> tuple[np.ndarray, int]:
    """Decode one weight from the start of ``buf``; returns (array, bytes consumed)."""
    shape = [int(d) for d in spec.get("shape", [])]
    count = math.prod(shape) if shape else 1
    dtype = spec.get("dtype", "float32")
    quant = spec.get("quantization") or {}
    qdtype = quant.get("dtype")
    if qdtype:
        if qdtype not in _QUANT:
            raise ModelFormatError(f"{where}: weight {spec.get('name')!r} has unsupported quantization {qdtype!r}")
        stored = np.dtype(_QUANT[qdtype])
    elif dtype in _RAW:
        stored = np.dtype(_RAW[dtype])
    else:
        raise ModelFormatError(f"{where}: weight {spec.get('name')!r} has unsupported dtype {dtype!r}")
    nbytes = count * stored.itemsize
    if nbytes > len(buf):
        raise ModelFormatError(f"{where}: weights end early at {spec.get('name')!r} "
                               f"(needs {nbytes} bytes, {len(buf)} left)")
    raw = np.frombuffer(buf[:nbytes], dtype=stored.newbyteorder("<"), count=count)
    if qdtype == "float16":
        arr = raw.astype(np.float32)
    elif qdtype:  # affine integer quantization
        arr = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
        if dtype == "int32":
            arr = np.round(arr).astype(np.int32)
    else:
        arr = raw.astype(stored, copy=True)
    return arr.reshape(shape), nbytes


def read_weights(manifest: list[dict[str, Any]], folder: Path) -> dict[str, np.ndarray]:
    """Every weight of a weights manifest, decoded, read from the shard files beside ``model.json``."""
    out: dict[str, np.ndarray] = {}
    for gi, group in enumerate(manifest):
        paths = group.get("paths") or []
        data = b"".join((folder / p).read_bytes() for p in paths)
        view = memoryview(data)
        where = f"{', '.join(paths) or f'group {gi}'}"
        offset = 0
        for spec in group.get("weights", []):
            arr, used = _decode(view[offset:], spec, where)
            out[spec["name"]] = arr
            offset += used
        if offset != len(data):
            raise ModelFormatError(f"{where}: {len(data) - offset} bytes left over after the last weight "
                                   "(the .bin does not match the manifest)")
    return out


def load_graph_model(model_json: str | Path) -> GraphModelFile:
    """Parse ``model.json`` and read its weights; a clear :class:`ModelFormatError` when it is not a graph model."""
    path = Path(model_json)
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"{path}: cannot read the model JSON: {exc}") from exc
    topology = meta.get("modelTopology") or {}
    nodes = topology.get("node")
    if meta.get("format", "graph-model") != "graph-model" or not isinstance(nodes, list):
        raise ModelFormatError(f"{path}: not a TFJS graph model (format {meta.get('format')!r}, no node list)")
    weights = read_weights(meta.get("weightsManifest") or [], path.parent)
    signature = meta.get("signature") or (meta.get("userDefinedMetadata") or {}).get("signature") or {}
    outputs = [spec.get("name", key) for key, spec in (signature.get("outputs") or {}).items()]
    inputs = [n["name"] for n in nodes if n.get("op") == "Placeholder"]
    info = {k: v for k, v in meta.items() if k not in ("modelTopology", "weightsManifest")}
    return GraphModelFile(path, nodes, weights, inputs, outputs, info)
