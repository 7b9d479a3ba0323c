"""A topological executor for TFJS graph models, on torch (CPU or CUDA).

Inputs of a node are written ``"name"`` (output 0), ``"name:1"`` (output 1) or ``"^name"`` (a
control dependency, ignored). Running computes only the nodes the requested outputs depend on, in
dependency order, and frees each intermediate tensor after its last use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from .ops import DTYPES, OPS, Attrs, UnsupportedOp
from .weights import GraphModelFile, ModelFormatError, load_graph_model

_SOURCE_OPS = ("Const", "Placeholder")


def parse_ref(ref: str) -> tuple[str, int]:
    """``"a/b:1"`` -> ("a/b", 1); ``"a/b"`` -> ("a/b", 0)."""
    name, sep, idx = ref.rpartition(":")
    if sep and idx.isdigit():
        return name, int(idx)
    return ref, 0


class Graph:
    """A loaded graph: constants on the device, nodes with parsed attributes, cached run plans."""

    def __init__(self, model: GraphModelFile, device: str | torch.device = "cpu"):
        self.model = model
        self.device = torch.device(device)
        self.nodes: dict[str, dict[str, Any]] = {}
        self.attrs: dict[str, Attrs] = {}
        self.inputs: dict[str, list[tuple[str, int]]] = {}
        unsupported = set()
        for node in model.nodes:
            name, opname = node["name"], node.get("op", "")
            self.nodes[name] = node
            self.attrs[name] = Attrs(node.get("attr"))
            self.inputs[name] = [parse_ref(r) for r in node.get("input", []) if not r.startswith("^")]
            if opname not in OPS and opname not in _SOURCE_OPS:
                unsupported.add(opname)
        if unsupported:
            raise UnsupportedOp(f"{model.path}: ops not implemented: {', '.join(sorted(unsupported))}")
        self.consts: dict[str, torch.Tensor] = {}
        for name, node in self.nodes.items():
            if node["op"] != "Const":
                continue
            if name not in model.weights:
                raise ModelFormatError(f"{model.path}: constant {name!r} has no weight in the manifest")
            self.consts[name] = torch.from_numpy(np.ascontiguousarray(model.weights[name])).to(self.device)
        for name, refs in self.inputs.items():
            for src, _ in refs:
                if src not in self.nodes:
                    raise ModelFormatError(f"{model.path}: node {name!r} reads unknown node {src!r}")
        self._caches: dict[str, dict | None] = {
            name: ({} if refs[1:] and all(self.nodes[s]["op"] == "Const" for s, _ in refs[1:]) else None)
            for name, refs in self.inputs.items()}
        self._plans: dict[tuple[str, ...], tuple[list[str], dict[str, int]]] = {}

    @classmethod
    def load(cls, model_json: str | Path, device: str | torch.device = "cpu") -> "Graph":
        return cls(load_graph_model(model_json), device)

    @property
    def placeholders(self) -> list[str]:
        return [n for n, node in self.nodes.items() if node["op"] == "Placeholder"]

    @property
    def nbytes(self) -> int:
        return int(sum(t.numel() * t.element_size() for t in self.consts.values()))

    def _plan(self, outputs: tuple[str, ...]) -> tuple[list[str], dict[str, int]]:
        """The nodes to run, in dependency order, and how many times each is read (iterative DFS)."""
        if outputs in self._plans:
            return self._plans[outputs]
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = on the stack, 2 = done
        for out in outputs:
            root = parse_ref(out)[0]
            if root not in self.nodes:
                raise KeyError(f"the graph has no node {root!r}")
            stack = [(root, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    state[name] = 2
                    order.append(name)
                    continue
                if state.get(name) == 2:
                    continue
                if state.get(name) == 1:
                    raise ModelFormatError(f"{self.model.path}: the graph has a cycle through {name!r}")
                state[name] = 1
                stack.append((name, True))
                for src, _ in reversed(self.inputs[name]):
                    if state.get(src) != 2:
                        stack.append((src, False))
        reads: dict[str, int] = {}
        for name in order:
            for src, _ in self.inputs[name]:
                reads[src] = reads.get(src, 0) + 1
        self._plans[outputs] = (order, reads)
        return order, reads

    def run(self, feeds: dict[str, Any], outputs: Iterable[str]) -> list[np.ndarray]:
        """Run the graph on ``feeds`` (placeholder name -> array); the requested outputs as numpy arrays."""
        outs = tuple(outputs)
        order, reads = self._plan(outs)
        keep = {parse_ref(o)[0] for o in outs}
        remaining = dict(reads)
        values: dict[str, tuple[torch.Tensor, ...]] = {}
        with torch.inference_mode():
            for name in order:
                node = self.nodes[name]
                opname = node["op"]
                if opname == "Const":
                    values[name] = (self.consts[name],)
                    continue
                if opname == "Placeholder":
                    if name not in feeds:
                        raise KeyError(f"no value fed for input {name!r} (inputs: {', '.join(self.placeholders)})")
                    dtype = DTYPES.get(self.attrs[name].get("dtype", "DT_FLOAT"), torch.float32)
                    values[name] = (torch.as_tensor(np.asarray(feeds[name])).to(self.device, dtype),)
                    continue
                args = [values[src][idx] for src, idx in self.inputs[name]]
                result = OPS[opname](args, self.attrs[name], self._caches[name])
                values[name] = result if isinstance(result, tuple) else (result,)
                for src, _ in self.inputs[name]:
                    remaining[src] -= 1
                    if remaining[src] == 0 and src not in keep:
                        values.pop(src, None)
            results = []
            for out in outs:
                name, idx = parse_ref(out)
                results.append(values[name][idx].detach().to("cpu").contiguous().numpy())
        return results
