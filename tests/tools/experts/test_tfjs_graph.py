"""The TFJS model reader (manifest, quantization, shards) and the graph executor, on tiny hand-made models."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from vistrace.tools.experts.tfjs import Graph, ModelFormatError, UnsupportedOp, load_graph_model, parse_ref

from .conftest import need_model


def s(text: str) -> dict:
    return {"s": base64.b64encode(text.encode()).decode()}


def ints(*v: int) -> dict:
    return {"list": {"i": [str(x) for x in v]}}


def write_model(folder, nodes, weights, shards=1, outputs=None):
    """A model.json + .bin shards; ``weights`` is [(spec, bytes)] in order."""
    data = b"".join(b for _, b in weights)
    cut = [len(data) * i // shards for i in range(shards + 1)]
    paths = [f"w{i}.bin" for i in range(shards)]
    for i, p in enumerate(paths):
        (folder / p).write_bytes(data[cut[i]:cut[i + 1]])
    meta = {"format": "graph-model", "modelTopology": {"node": nodes},
            "weightsManifest": [{"paths": paths, "weights": [spec for spec, _ in weights]}]}
    if outputs:
        meta["signature"] = {"outputs": {o: {"name": o} for o in outputs}}
    (folder / "model.json").write_text(json.dumps(meta))
    return folder / "model.json"


def const(name):
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}}


def test_parse_ref():
    assert parse_ref("a/b:1") == ("a/b", 1)
    assert parse_ref("a/b") == ("a/b", 0)
    assert parse_ref("Identity:0") == ("Identity", 0)


def test_weights_decode_float16_uint8_and_raw_across_shards(tmp_path):
    f16 = np.array([[0.5, -1.25], [3.0, 65504.0]], np.float16)
    q = np.array([0, 128, 255], np.uint8)
    i32 = np.array([3, -4], np.int32)
    f32 = np.array([1.5], np.float32)
    path = write_model(tmp_path, [], [
        ({"name": "h", "shape": [2, 2], "dtype": "float32", "quantization": {"dtype": "float16"}}, f16.tobytes()),
        ({"name": "q", "shape": [3], "dtype": "float32", "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
         q.tobytes()),
        ({"name": "i", "shape": [2], "dtype": "int32"}, i32.tobytes()),
        ({"name": "f", "shape": [], "dtype": "float32"}, f32.tobytes()),
    ], shards=3)
    w = load_graph_model(path).weights
    assert w["h"].dtype == np.float32 and w["h"].tolist() == [[0.5, -1.25], [3.0, 65504.0]]
    np.testing.assert_allclose(w["q"], [-1.0, 63.0, 126.5])  # q * scale + min
    assert w["i"].dtype == np.int32 and w["i"].tolist() == [3, -4]
    assert w["f"].shape == () and float(w["f"]) == 1.5


def test_weights_that_do_not_fill_the_bin_are_an_error(tmp_path):
    path = write_model(tmp_path, [], [({"name": "f", "shape": [1], "dtype": "float32"}, b"\0" * 8)])
    with pytest.raises(ModelFormatError, match="left over"):
        load_graph_model(path)
    path = write_model(tmp_path, [], [({"name": "f", "shape": [4], "dtype": "float32"}, b"\0" * 8)])
    with pytest.raises(ModelFormatError, match="end early"):
        load_graph_model(path)


def test_not_a_graph_model(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"format": "layers-model", "modelTopology": {}}))
    with pytest.raises(ModelFormatError, match="not a TFJS graph model"):
        load_graph_model(tmp_path / "model.json")


def tiny_graph(tmp_path):
    """x -> conv(3x3, stride 2, SAME) + bias -> relu -> reshape [-1] -> topk(3): values, indices (':1')."""
    w = np.arange(9, dtype=np.float32).reshape(3, 3, 1, 1) / 10
    b = np.array([-1.0], np.float32)
    nodes = [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        const("w"), const("b"),
        {"name": "shape", "op": "Const", "attr": {"dtype": {"type": "DT_INT32"}}},
        {"name": "k", "op": "Const", "attr": {"dtype": {"type": "DT_INT32"}}},
        {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"],
         "attr": {"padding": s("SAME"), "strides": ints(1, 2, 2, 1), "fused_ops": {"list": {"s": [
             s("BiasAdd")["s"], s("Relu")["s"]]}}, "data_format": s("NHWC")}},
        {"name": "flat", "op": "Reshape", "input": ["conv", "shape", "^x"]},
        {"name": "top", "op": "TopKV2", "input": ["flat", "k"]},
        {"name": "idx_f", "op": "Cast", "input": ["top:1"], "attr": {"DstT": {"type": "DT_FLOAT"}}},
        {"name": "out", "op": "AddV2", "input": ["top", "idx_f"]},
    ]
    weights = [({"name": "w", "shape": [3, 3, 1, 1], "dtype": "float32", "quantization": {"dtype": "float16"}},
                w.astype(np.float16).tobytes()),
               ({"name": "b", "shape": [1], "dtype": "float32"}, b.tobytes()),
               ({"name": "shape", "shape": [1], "dtype": "int32"}, np.int32([-1]).tobytes()),
               ({"name": "k", "shape": [], "dtype": "int32"}, np.int32(3).tobytes())]
    return write_model(tmp_path, nodes, weights, outputs=["out", "top:1"]), w.astype(np.float16).astype(np.float32), b


def test_graph_runs_nodes_in_dependency_order_with_output_indexes(tmp_path):
    path, w, b = tiny_graph(tmp_path)
    g = Graph.load(path)
    assert g.placeholders == ["x"] and g.model.outputs == ["out", "top:1"]
    x = np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)
    out, idx = g.run({"x": x}, ["out", "top:1"])
    # reference: 5x5, k3 s2 SAME -> 3x3 with 1 pixel padding on every side
    xp = np.pad(x[0, :, :, 0], 1)
    conv = np.array([[(xp[i * 2:i * 2 + 3, j * 2:j * 2 + 3] * w[:, :, 0, 0]).sum() for j in range(3)]
                     for i in range(3)])
    flat = np.maximum(conv + b[0], 0).reshape(-1)
    order = np.argsort(-flat, kind="stable")[:3]
    assert idx.tolist() == order.tolist() and idx.dtype == np.int32
    np.testing.assert_allclose(out, flat[order] + order, rtol=1e-5)


def test_graph_frees_what_it_no_longer_needs_and_runs_only_what_is_asked(tmp_path):
    path, _, _ = tiny_graph(tmp_path)
    g = Graph.load(path)
    order, reads = g._plan(("flat",))
    assert "top" not in order and order.index("conv") < order.index("flat")
    (flat,) = g.run({"x": np.ones((1, 5, 5, 1), np.float32)}, ["flat"])
    assert flat.shape == (9,)


def test_graph_errors_name_the_problem(tmp_path):
    path, _, _ = tiny_graph(tmp_path)
    g = Graph.load(path)
    with pytest.raises(KeyError, match="no value fed for input 'x'"):
        g.run({}, ["out"])
    with pytest.raises(KeyError, match="no node 'nope'"):
        g.run({"x": np.ones((1, 5, 5, 1), np.float32)}, ["nope"])
    meta = json.loads(path.read_text())
    meta["modelTopology"]["node"].append({"name": "odd", "op": "Einsum", "input": ["x"]})
    path.write_text(json.dumps(meta))
    with pytest.raises(UnsupportedOp, match="Einsum"):
        Graph.load(path)


@pytest.mark.parametrize("name, member, n_weights, n_f16", [("centernet", "models/centernet.json", 267, 227),
                                                            ("blazeface", "models/blazeface.json", 112, 0),
                                                            ("movenet", "models/movenet-lightning.json", 180, 149)])
def test_the_shipped_graphs_load_with_every_op_implemented(name, member, n_weights, n_f16):
    need_model(name)
    from vistrace.tools import models

    path = models.require(name, member)
    g = Graph.load(path)
    meta = json.loads(path.read_text())
    specs = [w for grp in meta["weightsManifest"] for w in grp["weights"]]
    assert len(g.consts) == len(specs) == n_weights
    assert sum((w.get("quantization") or {}).get("dtype") == "float16" for w in specs) == n_f16
