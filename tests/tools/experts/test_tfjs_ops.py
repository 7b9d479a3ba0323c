"""Each op of the TFJS executor against a reference written here in numpy (or by hand)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from vistrace.tools.experts.tfjs.ops import OPS, Attrs, UnsupportedOp, same_padding

RNG = np.random.default_rng(0)


def t(a, dtype=None) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=dtype))


def run(op, *inputs, **attrs):
    out = OPS[op]([x if isinstance(x, torch.Tensor) else t(x) for x in inputs], Attrs(**attrs), None)
    return tuple(o.numpy() for o in out) if isinstance(out, tuple) else out.numpy()


# --- numpy references ------------------------------------------------------------------------

def tf_same(n: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    # TF's definition, written out again: output ceil(n/s), the odd padding pixel after
    out = -(-n // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
    return total // 2, total - total // 2


def ref_conv(x, w, stride=1, padding="SAME", depthwise=False, dilation=1):
    """NHWC x, HWIO (or HW,in,mult for depthwise) w; a direct sum over the window."""
    n, h, wd, c = x.shape
    kh, kw = w.shape[:2]
    if padding == "SAME":
        (pt, pb), (pl, pr) = tf_same(h, kh, stride, dilation), tf_same(wd, kw, stride, dilation)
    else:
        pt = pb = pl = pr = 0
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    eh, ew = (kh - 1) * dilation + 1, (kw - 1) * dilation + 1
    oh, ow = (xp.shape[1] - eh) // stride + 1, (xp.shape[2] - ew) // stride + 1
    cout = c * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((n, oh, ow, cout), dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * stride:i * stride + eh:dilation, j * stride:j * stride + ew:dilation, :]
            if depthwise:  # channel c*mult + m
                out[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", win, w).reshape(n, -1)
            else:
                out[:, i, j, :] = np.einsum("nhwc,hwco->no", win, w)
    return out


def ref_resize(x, oh, ow, half_pixel=False, align_corners=False):
    """TF ResizeBilinear, one output pixel at a time."""
    n, h, w, c = x.shape
    out = np.zeros((n, oh, ow, c))

    def src(dst, n_in, n_out):
        scale = (n_in - 1) / (n_out - 1) if align_corners and n_out > 1 else n_in / n_out
        s = (dst + 0.5) * scale - 0.5 if half_pixel else dst * scale
        lo = int(np.floor(s))
        frac = s - lo
        return min(max(lo, 0), n_in - 1), min(max(lo + 1, 0), n_in - 1), frac

    for i in range(oh):
        y0, y1, fy = src(i, h, oh)
        for j in range(ow):
            x0, x1, fx = src(j, w, ow)
            top = x[:, y0, x0] + (x[:, y0, x1] - x[:, y0, x0]) * fx
            bottom = x[:, y1, x0] + (x[:, y1, x1] - x[:, y1, x0]) * fx
            out[:, i, j] = top + (bottom - top) * fy
    return out


# --- padding ---------------------------------------------------------------------------------

@pytest.mark.parametrize("n, k, s, expected", [(4, 3, 2, (0, 1)), (5, 3, 2, (1, 1)), (512, 3, 2, (0, 1)),
                                               (7, 3, 1, (1, 1)), (6, 1, 2, (0, 0)), (8, 5, 2, (1, 2))])
def test_same_padding_puts_the_odd_pixel_after(n, k, s, expected):
    assert same_padding(n, k, s) == expected == tf_same(n, k, s)


def test_conv2d_same_stride2_is_asymmetric_bottom_right():
    # a 4x4 ramp, 3x3 ones, stride 2: TF pads 0 before / 1 after, so out[0,0] sums x[0:3,0:3]
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    w = np.ones((3, 3, 1, 1), dtype=np.float32)
    out = run("Conv2D", x, w, strides=[1, 2, 2, 1], padding="SAME")
    assert out.shape == (1, 2, 2, 1)
    assert out[0, 0, 0, 0] == x[0, 0:3, 0:3, 0].sum() == 45
    assert out[0, 1, 1, 0] == x[0, 2:4, 2:4, 0].sum() == 50  # symmetric padding would give a different sum
    np.testing.assert_allclose(out, ref_conv(x, w, 2), rtol=1e-6)


@pytest.mark.parametrize("shape, k, stride, padding", [((1, 9, 8, 3), 3, 1, "SAME"), ((1, 8, 8, 3), 3, 2, "SAME"),
                                                       ((2, 7, 6, 4), 5, 2, "SAME"), ((1, 8, 7, 3), 3, 2, "VALID"),
                                                       ((1, 6, 6, 3), 1, 1, "VALID")])
def test_conv2d_matches_the_reference(shape, k, stride, padding):
    x = RNG.normal(size=shape).astype(np.float32)
    w = RNG.normal(size=(k, k, shape[3], 5)).astype(np.float32)
    out = run("Conv2D", x, w, strides=[1, stride, stride, 1], padding=padding)
    np.testing.assert_allclose(out, ref_conv(x, w, stride, padding), rtol=1e-4, atol=1e-4)


def test_conv2d_with_dilation_matches_the_reference():
    x = RNG.normal(size=(1, 9, 9, 2)).astype(np.float32)
    w = RNG.normal(size=(3, 3, 2, 3)).astype(np.float32)
    out = run("Conv2D", x, w, strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 2, 2, 1])
    np.testing.assert_allclose(out, ref_conv(x, w, 1, "SAME", dilation=2), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("stride, mult", [(1, 1), (2, 1), (2, 2)])
def test_depthwise_conv_matches_the_reference(stride, mult):
    x = RNG.normal(size=(1, 8, 9, 3)).astype(np.float32)
    w = RNG.normal(size=(3, 3, 3, mult)).astype(np.float32)
    out = run("DepthwiseConv2dNative", x, w, strides=[1, stride, stride, 1], padding="SAME")
    np.testing.assert_allclose(out, ref_conv(x, w, stride, "SAME", depthwise=True), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fused, act", [(["BiasAdd"], lambda y: y), (["BiasAdd", "Relu"], lambda y: np.maximum(y, 0)),
                                        (["BiasAdd", "Relu6"], lambda y: np.clip(y, 0, 6))])
def test_fused_conv2d_adds_bias_then_activation(fused, act):
    x = RNG.normal(size=(1, 8, 8, 3)).astype(np.float32) * 3
    w = RNG.normal(size=(3, 3, 3, 4)).astype(np.float32)
    b = RNG.normal(size=(4,)).astype(np.float32)
    out = run("_FusedConv2D", x, w, b, strides=[1, 2, 2, 1], padding="SAME", fused_ops=fused, num_args=1)
    np.testing.assert_allclose(out, act(ref_conv(x, w, 2) + b), rtol=1e-4, atol=1e-4)


def test_fused_conv2d_prelu_uses_the_second_argument_as_alpha():
    x = RNG.normal(size=(1, 5, 5, 2)).astype(np.float32)
    w = RNG.normal(size=(1, 1, 2, 3)).astype(np.float32)
    b = np.zeros(3, np.float32)
    alpha = np.array([0.1, 0.2, 0.3], np.float32)
    out = run("_FusedConv2D", x, w, b, alpha, strides=[1, 1, 1, 1], padding="VALID", fused_ops=["BiasAdd", "Prelu"])
    y = ref_conv(x, w, 1, "VALID")
    np.testing.assert_allclose(out, np.where(y >= 0, y, y * alpha), rtol=1e-4, atol=1e-5)


def test_fused_conv2d_batch_norm_folds_scale_offset_mean_variance():
    x = RNG.normal(size=(1, 6, 6, 2)).astype(np.float32)
    w = RNG.normal(size=(3, 3, 2, 3)).astype(np.float32)
    scale, offset = np.float32([1.0, 2.0, 0.5]), np.float32([0.1, -0.2, 0.3])
    mean, var = np.float32([0.5, -1.0, 0.0]), np.float32([1.0, 4.0, 0.25])
    out = run("_FusedConv2D", x, w, scale, offset, mean, var, strides=[1, 1, 1, 1], padding="SAME",
              fused_ops=["FusedBatchNorm", "Relu"], epsilon=0.001)
    y = (ref_conv(x, w) - mean) * scale / np.sqrt(var + 0.001) + offset
    np.testing.assert_allclose(out, np.maximum(y, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fused", [["BiasAdd", "Relu"], ["BiasAdd", "Relu6"], ["BiasAdd"]])
def test_fused_depthwise_conv(fused):
    x = RNG.normal(size=(1, 9, 9, 4)).astype(np.float32) * 4
    w = RNG.normal(size=(3, 3, 4, 1)).astype(np.float32)
    b = RNG.normal(size=(4,)).astype(np.float32)
    out = run("FusedDepthwiseConv2dNative", x, w, b, strides=[1, 2, 2, 1], padding="SAME", fused_ops=fused)
    y = ref_conv(x, w, 2, depthwise=True) + b
    y = {"Relu": np.maximum(y, 0), "Relu6": np.clip(y, 0, 6)}.get(fused[-1], y)
    np.testing.assert_allclose(out, y, rtol=1e-4, atol=1e-4)


def test_fused_conv_cache_keeps_the_prepared_filter():
    x = RNG.normal(size=(1, 4, 4, 2)).astype(np.float32)
    w = RNG.normal(size=(3, 3, 2, 2)).astype(np.float32)
    cache: dict = {}
    a = OPS["Conv2D"]([t(x), t(w)], Attrs(strides=[1, 1, 1, 1], padding="SAME"), cache)
    assert "w" in cache
    b = OPS["Conv2D"]([t(x), t(w)], Attrs(strides=[1, 1, 1, 1], padding="SAME"), cache)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_unknown_fused_activation_is_refused():
    with pytest.raises(UnsupportedOp, match="Gelu"):
        run("_FusedConv2D", np.ones((1, 2, 2, 1), np.float32), np.ones((1, 1, 1, 1), np.float32),
            np.zeros(1, np.float32), fused_ops=["BiasAdd", "Gelu"], padding="VALID")


# --- pooling and resizing --------------------------------------------------------------------

def test_max_pool_same_pads_with_minus_infinity():
    x = -np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) - 1  # all negative: zero padding would win
    out = run("MaxPool", x, ksize=[1, 3, 3, 1], strides=[1, 1, 1, 1], padding="SAME")
    ref = np.full((4, 4), -np.inf)
    for i in range(4):
        for j in range(4):
            ref[i, j] = x[0, max(i - 1, 0):i + 2, max(j - 1, 0):j + 2, 0].max()
    np.testing.assert_array_equal(out[0, :, :, 0], ref)


def test_max_pool_2x2_stride2():
    x = RNG.normal(size=(1, 6, 6, 2)).astype(np.float32)
    out = run("MaxPool", x, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1], padding="SAME")
    np.testing.assert_array_equal(out, x.reshape(1, 3, 2, 3, 2, 2).max(axis=(2, 4)))


def test_resize_bilinear_legacy_has_no_half_pixel_offset():
    x = np.array([0.0, 10.0], np.float32).reshape(1, 1, 2, 1)
    legacy = run("ResizeBilinear", x, np.array([1, 4], np.int32), align_corners=False, half_pixel_centers=False)
    half = run("ResizeBilinear", x, np.array([1, 4], np.int32), align_corners=False, half_pixel_centers=True)
    np.testing.assert_allclose(legacy.reshape(-1), [0, 5, 10, 10])       # src = dst * in/out
    np.testing.assert_allclose(half.reshape(-1), [0, 2.5, 7.5, 10])       # src = (dst + .5) * in/out - .5
    corners = run("ResizeBilinear", x, np.array([1, 4], np.int32), align_corners=True)
    np.testing.assert_allclose(corners.reshape(-1), [0, 10 / 3, 20 / 3, 10], rtol=1e-6)


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("size", [(8, 10), (3, 5), (16, 16)])
def test_resize_bilinear_matches_the_reference(half, size):
    x = RNG.normal(size=(1, 4, 5, 3)).astype(np.float32)
    out = run("ResizeBilinear", x, np.array(size, np.int32), half_pixel_centers=half)
    np.testing.assert_allclose(out, ref_resize(x, *size, half_pixel=half), rtol=1e-5, atol=1e-5)


# --- elementwise -----------------------------------------------------------------------------

A = RNG.normal(size=(2, 3, 4)).astype(np.float32)
B = RNG.normal(size=(4,)).astype(np.float32) + 3  # broadcast, away from zero


@pytest.mark.parametrize("op, ref", [("Add", np.add), ("AddV2", np.add), ("Sub", np.subtract), ("Mul", np.multiply),
                                     ("RealDiv", np.divide), ("SquaredDifference", lambda a, b: (a - b) ** 2)])
def test_binary_float_ops_broadcast(op, ref):
    np.testing.assert_allclose(run(op, A, B), ref(A, B), rtol=1e-6)


def test_floor_div_and_mod_round_toward_minus_infinity():
    a = np.array([7, -7, 7, -7, 0], np.int32)
    b = np.array([2, 2, -2, -2, 3], np.int32)
    np.testing.assert_array_equal(run("FloorDiv", a, b), [3, -4, -4, 3, 0])
    np.testing.assert_array_equal(run("FloorMod", a, b), [1, 1, -1, -1, 0])
    assert run("FloorDiv", a, b).dtype == np.int32
    np.testing.assert_allclose(run("FloorDiv", np.float32([7.5, -7.5]), np.float32([2, 2])), [3, -4])


def test_equal_and_cast():
    eq = run("Equal", np.float32([1, 2, 3]), np.float32([1, 0, 3]))
    assert eq.dtype == np.bool_ and eq.tolist() == [True, False, True]
    assert run("Cast", eq, DstT="DT_FLOAT").tolist() == [1.0, 0.0, 1.0]
    assert run("Cast", np.float32([1.7, -1.7]), DstT="DT_INT32").tolist() == [1, -1]  # truncation
    assert run("Cast", np.int32([3]), DstT="DT_FLOAT").dtype == np.float32


@pytest.mark.parametrize("op, ref", [("Relu", lambda a: np.maximum(a, 0)), ("Relu6", lambda a: np.clip(a, 0, 6)),
                                     ("Sigmoid", lambda a: 1 / (1 + np.exp(-a))), ("Identity", lambda a: a)])
def test_unary_ops(op, ref):
    a = A * 5
    np.testing.assert_allclose(run(op, a), ref(a), rtol=1e-5, atol=1e-6)


def test_sqrt():
    np.testing.assert_allclose(run("Sqrt", np.abs(A)), np.sqrt(np.abs(A)), rtol=1e-6)


# --- shapes and indexing ---------------------------------------------------------------------

def test_reshape_expand_dims_squeeze():
    assert run("Reshape", A, np.int32([4, -1])).shape == (4, 6)
    assert run("ExpandDims", A, np.int32(0)).shape == (1, 2, 3, 4)
    assert run("ExpandDims", A, np.int32([-1])).shape == (2, 3, 4, 1)
    x = np.zeros((1, 3, 1, 2), np.float32)
    assert run("Squeeze", x, squeeze_dims=[0]).shape == (3, 1, 2)
    assert run("Squeeze", x, squeeze_dims=[]).shape == (3, 2)
    assert run("Squeeze", x, squeeze_dims=[0, -2]).shape == (3, 2)


def test_concat_pack_unpack():
    np.testing.assert_array_equal(run("ConcatV2", A, A * 2, np.int32(1)), np.concatenate([A, A * 2], axis=1))
    np.testing.assert_array_equal(run("ConcatV2", A, A, np.int32(-1)), np.concatenate([A, A], axis=-1))
    np.testing.assert_array_equal(run("Pack", A, A + 1, A + 2, axis=1), np.stack([A, A + 1, A + 2], axis=1))
    parts = run("Unpack", A, axis=1, num=3)
    assert len(parts) == 3
    for i, p in enumerate(parts):
        np.testing.assert_array_equal(p, A[:, i])


def test_pad_is_constant_zero_per_dimension():
    x = np.ones((1, 2, 3, 1), np.float32)
    out = run("Pad", x, np.int32([[0, 0], [1, 2], [0, 1], [0, 0]]))
    np.testing.assert_array_equal(out, np.pad(x, ((0, 0), (1, 2), (0, 1), (0, 0))))


def test_mean_keeps_dims_when_asked():
    x = RNG.normal(size=(1, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(run("Mean", x, np.int32([1, 2]), keep_dims=True), x.mean(axis=(1, 2), keepdims=True),
                               rtol=1e-5)
    assert run("Mean", x, np.int32([1, 2]), keep_dims=False).shape == (1, 3)


@pytest.mark.parametrize("begin, end, strides, masks, ref", [
    ([0, 0, 1], [0, 0, 3], [1, 1, 1], dict(begin_mask=3, end_mask=3), lambda a: a[:, :, 1:3]),
    ([0, 1, 0], [2, 3, 4], [1, 1, 2], {}, lambda a: a[0:2, 1:3, 0:4:2]),
    ([0, 0, -1], [0, 0, 0], [1, 1, 1], dict(begin_mask=3, end_mask=7), lambda a: a[:, :, -1:]),
    ([1, 0, 0], [2, 0, 0], [1, 1, 1], dict(end_mask=6, begin_mask=6, shrink_axis_mask=1), lambda a: a[1]),
    ([0, 0, 0], [0, 0, 0], [1, 1, -1], dict(begin_mask=7, end_mask=7), lambda a: a[:, :, ::-1]),
    ([0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1], dict(begin_mask=15, end_mask=15, new_axis_mask=2),
     lambda a: a[:, None, :, :]),
])
def test_strided_slice(begin, end, strides, masks, ref):
    out = run("StridedSlice", A, np.int32(begin), np.int32(end), np.int32(strides), **masks)
    np.testing.assert_array_equal(out, ref(A))


def test_gather_v2_along_an_axis():
    idx = np.int32([[2, 0], [1, 1]])
    np.testing.assert_array_equal(run("GatherV2", A, idx, np.int32(1)), np.take(A, idx, axis=1))
    np.testing.assert_array_equal(run("GatherV2", A, np.int32([3, 0]), np.int32(-1)), np.take(A, [3, 0], axis=-1))


def test_gather_nd_indexes_leading_dims():
    idx = np.int32([[0, 2], [1, 0]])
    np.testing.assert_array_equal(run("GatherNd", A, idx), np.stack([A[0, 2], A[1, 0]]))
    idx3 = np.int32([[[0, 1, 3]], [[1, 2, 0]]])
    np.testing.assert_array_equal(run("GatherNd", A, idx3), np.array([[A[0, 1, 3]], [A[1, 2, 0]]]))


def test_top_k_orders_ties_by_lower_index_and_returns_int32_indices():
    x = np.float32([[0.1, 0.5, 0.3, 0.5, 0.9, 0.3]])
    values, indices = run("TopKV2", x, np.int32(4))
    np.testing.assert_allclose(values, [[0.9, 0.5, 0.5, 0.3]])
    assert indices.tolist() == [[4, 1, 3, 2]] and indices.dtype == np.int32


def test_top_k_on_long_rows_matches_a_stable_sort():
    x = RNG.integers(0, 50, size=(2, 1000)).astype(np.float32)  # many ties
    values, indices = run("TopKV2", x, np.int32(10))
    order = np.argsort(-x, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(indices, order)
    np.testing.assert_array_equal(values, np.take_along_axis(x, order, axis=1))


def test_arg_max_returns_the_first_maximum():
    x = np.float32([[1, 3, 3, 0], [5, 5, 1, 5]])
    out = run("ArgMax", x, np.int32(1), output_type="DT_INT32")
    assert out.tolist() == [1, 0] and out.dtype == np.int32


def test_attrs_decode_tfjs_encoding():
    raw = {"padding": {"s": base64.b64encode(b"SAME").decode()}, "strides": {"list": {"i": ["1", "2", "2", "1"]}},
           "fused_ops": {"list": {"s": [base64.b64encode(b"BiasAdd").decode()]}}, "epsilon": {"f": 0.5},
           "keep_dims": {"b": True}, "N": {"i": "3"}, "DstT": {"type": "DT_FLOAT"}}
    a = Attrs(raw)
    assert (a.get("padding"), a.get("strides"), a.get("fused_ops")) == ("SAME", [1, 2, 2, 1], ["BiasAdd"])
    assert (a.get("epsilon"), a.get("keep_dims"), a.get("N"), a.get("DstT")) == (0.5, True, 3, "DT_FLOAT")
    assert a.get("missing", 7) == 7
