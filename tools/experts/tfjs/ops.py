"""The TensorFlow ops our TFJS graphs use, on torch tensors in TF's layout (NHWC images).

Each op is ``fn(inputs, attrs, cache) -> Tensor | tuple[Tensor, ...]``. ``cache`` is a per-node
dict given only when every input after the first is a graph constant, so an op may keep values
derived from those (e.g. a filter already in torch's layout); it is ``None`` otherwise.

TF semantics that differ from torch's defaults, and are honoured here:

- ``SAME`` padding pads ``total = max((ceil(n/s)-1)*s + (k-1)*d + 1 - n, 0)`` with ``total//2``
  before and the rest after, so for stride 2 the extra pixel goes bottom/right (not symmetric);
- ``ResizeBilinear`` with ``half_pixel_centers=False`` (legacy) samples ``src = dst * in/out`` (no
  half-pixel offset); with ``half_pixel_centers=True`` ``src = (dst + 0.5) * in/out - 0.5``;
- ``TopKV2`` breaks ties by the lower index; ``ArgMax`` returns the first maximum;
- ``FloorDiv``/``FloorMod`` round toward minus infinity (the remainder has the divisor's sign).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from vistrace.errors import VistraceError

from .attrs import Attrs

DTYPES = {"DT_FLOAT": torch.float32, "DT_INT32": torch.int32, "DT_BOOL": torch.bool, "DT_INT64": torch.int64,
          "DT_HALF": torch.float16, "DT_UINT8": torch.uint8}


class UnsupportedOp(VistraceError):
    """The graph uses an op (or an attribute value) this executor does not implement."""


Op = Callable[[list[torch.Tensor], Attrs, "dict | None"], Any]
OPS: dict[str, Op] = {}


def op(*names: str):
    def register(fn: Op) -> Op:
        for n in names:
            OPS[n] = fn
        return fn
    return register


def ints(t: torch.Tensor) -> list[int]:
    return [int(v) for v in t.reshape(-1).tolist()]


# --- padding -----------------------------------------------------------------------------------

def same_padding(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TF 'SAME' padding (before, after) for one spatial axis: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_pads(x: torch.Tensor, kh: int, kw: int, attrs: Attrs) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) for an NHWC input under the node's padding attribute."""
    padding = attrs.get("padding", "VALID")
    s = attrs.get("strides", [1, 1, 1, 1])
    d = attrs.get("dilations", [1, 1, 1, 1])
    if padding == "VALID":
        return 0, 0, 0, 0
    if padding == "SAME":
        return (*same_padding(x.shape[1], kh, s[1], d[1]), *same_padding(x.shape[2], kw, s[2], d[2]))
    if padding == "EXPLICIT":
        p = attrs.get("explicit_paddings", [0] * 8)
        return p[2], p[3], p[4], p[5]
    raise UnsupportedOp(f"padding {padding!r}")


def _check_nhwc(attrs: Attrs) -> None:
    fmt = attrs.get("data_format", "NHWC")
    if fmt != "NHWC":
        raise UnsupportedOp(f"data_format {fmt!r} (only NHWC)")


# --- convolutions ------------------------------------------------------------------------------

def _conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, kh: int, kw: int, groups: int,
          attrs: Attrs) -> torch.Tensor:
    """NHWC in, NHWC out; ``weight`` in torch's OIHW. The NCHW view of an NHWC tensor is channels-last."""
    _check_nhwc(attrs)
    top, bottom, left, right = _spatial_pads(x, kh, kw, attrs)
    pad: tuple[int, int] | int = 0
    if top == bottom and left == right:
        pad = (top, left)
    else:
        x = F.pad(x, (0, 0, left, right, top, bottom))
    s = attrs.get("strides", [1, 1, 1, 1])
    d = attrs.get("dilations", [1, 1, 1, 1])
    y = F.conv2d(x.permute(0, 3, 1, 2), weight, bias, stride=(s[1], s[2]), padding=pad, dilation=(d[1], d[2]),
                 groups=groups)
    return y.permute(0, 2, 3, 1)


def _conv_weight(w: torch.Tensor, depthwise: bool) -> torch.Tensor:
    if depthwise:  # [kh, kw, in, mult] -> [in*mult, 1, kh, kw]; output channel c*mult + m as in TF
        kh, kw, cin, mult = w.shape
        return w.permute(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw).contiguous()
    return w.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW


def _weight(inputs: list[torch.Tensor], cache: dict | None, depthwise: bool) -> torch.Tensor:
    if cache is not None:
        if "w" not in cache:
            cache["w"] = _conv_weight(inputs[1], depthwise)
        return cache["w"]
    return _conv_weight(inputs[1], depthwise)


def _activation(y: torch.Tensor, name: str, args: list[torch.Tensor], attrs: Attrs) -> torch.Tensor:
    if name == "Relu":
        return F.relu(y)
    if name == "Relu6":
        return y.clamp(0.0, 6.0)
    if name == "Prelu":
        alpha = args[0]
        return torch.where(y >= 0, y, y * alpha)
    if name == "LeakyRelu":
        return F.leaky_relu(y, attrs.get("leakyrelu_alpha", 0.2))
    if name == "Elu":
        return F.elu(y)
    if name == "Sigmoid":
        return torch.sigmoid(y)
    raise UnsupportedOp(f"fused activation {name!r}")


def _fused(inputs: list[torch.Tensor], attrs: Attrs, cache: dict | None, depthwise: bool) -> torch.Tensor:
    x, w = inputs[0], inputs[1]
    args = list(inputs[2:])
    fused = attrs.get("fused_ops", [])
    kh, kw = w.shape[0], w.shape[1]
    groups = w.shape[2] if depthwise else 1
    weight = _weight(inputs, cache, depthwise)
    bias = None
    rest = list(fused)
    if rest and rest[0] == "BiasAdd":
        bias = args.pop(0)
        rest.pop(0)
    elif rest and rest[0] == "FusedBatchNorm":
        scale, offset, mean, var = args[:4]
        args = args[4:]
        rest.pop(0)
        eps = attrs.get("epsilon", 0.001)
        inv = scale / torch.sqrt(var + eps)
        bias = offset - mean * inv
        weight = weight * inv.reshape(-1, 1, 1, 1)
    y = _conv(x, weight, bias, kh, kw, groups, attrs)
    for name in rest:
        y = _activation(y, name, args, attrs)
    return y


@op("Conv2D")
def conv2d(inputs, attrs, cache=None):
    w = inputs[1]
    return _conv(inputs[0], _weight(inputs, cache, False), None, w.shape[0], w.shape[1], 1, attrs)


@op("DepthwiseConv2dNative")
def depthwise_conv2d(inputs, attrs, cache=None):
    w = inputs[1]
    return _conv(inputs[0], _weight(inputs, cache, True), None, w.shape[0], w.shape[1], w.shape[2], attrs)


@op("_FusedConv2D")
def fused_conv2d(inputs, attrs, cache=None):
    return _fused(inputs, attrs, cache, depthwise=False)


@op("FusedDepthwiseConv2dNative", "_FusedDepthwiseConv2dNative")
def fused_depthwise_conv2d(inputs, attrs, cache=None):
    return _fused(inputs, attrs, cache, depthwise=True)


@op("MaxPool")
def max_pool(inputs, attrs, cache=None):
    _check_nhwc(attrs)
    x = inputs[0]
    k = attrs.get("ksize", [1, 1, 1, 1])
    s = attrs.get("strides", [1, 1, 1, 1])
    top, bottom, left, right = _spatial_pads(x, k[1], k[2], Attrs(padding=attrs.get("padding", "VALID"), strides=s))
    if top or bottom or left or right:  # pad with -inf so padding never wins the max
        x = F.pad(x, (0, 0, left, right, top, bottom), value=float("-inf"))
    y = F.max_pool2d(x.permute(0, 3, 1, 2), (k[1], k[2]), (s[1], s[2]))
    return y.permute(0, 2, 3, 1)


# --- resizing ----------------------------------------------------------------------------------

def _resize_axis(n_in: int, n_out: int, align: bool, half: bool, device) -> tuple[torch.Tensor, ...]:
    if align and n_out > 1:
        scale = (n_in - 1) / (n_out - 1)
    else:
        scale = n_in / n_out
    dst = torch.arange(n_out, dtype=torch.float64, device=device)
    src = (dst + 0.5) * scale - 0.5 if half else dst * scale
    floor = torch.floor(src)
    frac = (src - floor).to(torch.float32)
    lo = floor.long().clamp(0, n_in - 1)
    hi = (floor.long() + 1).clamp(0, n_in - 1)
    return lo, hi, frac


@op("ResizeBilinear")
def resize_bilinear(inputs, attrs, cache=None):
    x, size = inputs[0], ints(inputs[1])
    align, half = attrs.get("align_corners", False), attrs.get("half_pixel_centers", False)
    n, h, w, c = x.shape
    ylo, yhi, fy = _resize_axis(h, size[0], align, half, x.device)
    xlo, xhi, fx = _resize_axis(w, size[1], align, half, x.device)
    xf = x.float()
    top, bottom = xf.index_select(1, ylo), xf.index_select(1, yhi)
    rows = top + (bottom - top) * fy.reshape(1, -1, 1, 1)
    left, right = rows.index_select(2, xlo), rows.index_select(2, xhi)
    return left + (right - left) * fx.reshape(1, 1, -1, 1)


# --- elementwise -------------------------------------------------------------------------------

def _binary(fn):
    return lambda inputs, attrs, cache=None: fn(inputs[0], inputs[1])


OPS["Add"] = OPS["AddV2"] = _binary(torch.add)
OPS["Sub"] = _binary(torch.sub)
OPS["Mul"] = _binary(torch.mul)
OPS["RealDiv"] = _binary(torch.div)
OPS["FloorDiv"] = _binary(lambda a, b: torch.div(a, b, rounding_mode="floor"))
OPS["FloorMod"] = _binary(torch.remainder)
OPS["SquaredDifference"] = _binary(lambda a, b: (a - b) * (a - b))
OPS["Equal"] = _binary(torch.eq)
OPS["Relu"] = lambda inputs, attrs, cache=None: F.relu(inputs[0])
OPS["Relu6"] = lambda inputs, attrs, cache=None: inputs[0].clamp(0.0, 6.0)
OPS["Sigmoid"] = lambda inputs, attrs, cache=None: torch.sigmoid(inputs[0])
OPS["Sqrt"] = lambda inputs, attrs, cache=None: torch.sqrt(inputs[0])
OPS["Identity"] = lambda inputs, attrs, cache=None: inputs[0]


@op("Cast")
def cast(inputs, attrs, cache=None):
    dst = attrs.get("DstT", "DT_FLOAT")
    if dst not in DTYPES:
        raise UnsupportedOp(f"Cast to {dst}")
    return inputs[0].to(DTYPES[dst])


# --- shapes and indexing -----------------------------------------------------------------------

@op("Reshape")
def reshape(inputs, attrs, cache=None):
    return inputs[0].reshape(ints(inputs[1]))


@op("ExpandDims")
def expand_dims(inputs, attrs, cache=None):
    return inputs[0].unsqueeze(ints(inputs[1])[0])


@op("Squeeze")
def squeeze(inputs, attrs, cache=None):
    dims = attrs.get("squeeze_dims", None) or attrs.get("axis", None) or []
    x = inputs[0]
    if not dims:
        return x.squeeze()
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = x.squeeze(d)
    return x


@op("ConcatV2")
def concat(inputs, attrs, cache=None):
    return torch.cat(list(inputs[:-1]), dim=ints(inputs[-1])[0])


@op("Pack")
def pack(inputs, attrs, cache=None):
    return torch.stack(list(inputs), dim=attrs.get("axis", 0))


@op("Unpack")
def unpack(inputs, attrs, cache=None):
    return tuple(torch.unbind(inputs[0], dim=attrs.get("axis", 0)))


@op("Pad")
def pad(inputs, attrs, cache=None):
    p = ints(inputs[1])  # [[before, after], ...] per dim, first dim first
    flat: list[int] = []
    for i in reversed(range(len(p) // 2)):
        flat += [p[2 * i], p[2 * i + 1]]
    return F.pad(inputs[0], flat)


@op("Mean")
def mean(inputs, attrs, cache=None):
    axes = ints(inputs[1])
    return inputs[0].float().mean(dim=axes, keepdim=attrs.get("keep_dims", False))


@op("StridedSlice")
def strided_slice(inputs, attrs, cache=None):
    x = inputs[0]
    begin, end, strides = ints(inputs[1]), ints(inputs[2]), ints(inputs[3])
    bm, em = attrs.get("begin_mask", 0), attrs.get("end_mask", 0)
    sm, nm = attrs.get("shrink_axis_mask", 0), attrs.get("new_axis_mask", 0)
    if attrs.get("ellipsis_mask", 0):
        raise UnsupportedOp("StridedSlice with ellipsis_mask")
    dim = 0
    for i in range(len(begin)):
        if nm >> i & 1:
            x = x.unsqueeze(dim)
            dim += 1
            continue
        size = x.shape[dim]
        if sm >> i & 1:
            x = x.select(dim, begin[i] + size if begin[i] < 0 else begin[i])
            continue
        step = strides[i]
        lo, hi = None if bm >> i & 1 else begin[i], None if em >> i & 1 else end[i]
        start, stop, step = slice(lo, hi, step).indices(size)
        if step > 0:
            x = x[(slice(None),) * dim + (slice(start, stop, step),)]
        else:
            x = x.index_select(dim, torch.arange(start, stop, step, device=x.device))
        dim += 1
    return x


@op("GatherV2")
def gather(inputs, attrs, cache=None):
    params, idx = inputs[0], inputs[1]
    axis = ints(inputs[2])[0] % params.dim()
    if attrs.get("batch_dims", 0):
        raise UnsupportedOp("GatherV2 with batch_dims")
    out = params.index_select(axis, idx.reshape(-1).long())
    return out.reshape(tuple(params.shape[:axis]) + tuple(idx.shape) + tuple(params.shape[axis + 1:]))


@op("GatherNd")
def gather_nd(inputs, attrs, cache=None):
    params, idx = inputs[0], inputs[1].long()
    return params[tuple(idx.unbind(-1))]


@op("TopKV2")
def top_k(inputs, attrs, cache=None):
    x, k = inputs[0], ints(inputs[1])[0]
    n = x.shape[-1]
    if n <= 4 * k:
        values, order = torch.sort(x, dim=-1, descending=True, stable=True)  # stable: ties keep the lower index
        return values[..., :k], order[..., :k].to(torch.int32)
    # a full stable sort of a large row is slow: keep the candidates >= the k-th value, sort only those
    rows = x.reshape(-1, n)
    kth = torch.topk(rows, k, dim=-1).values[:, -1]
    vals, idxs = [], []
    for row, t in zip(rows, kth):
        cand = torch.nonzero(row >= t).squeeze(1)  # ascending indices
        v, o = torch.sort(row[cand], descending=True, stable=True)
        vals.append(v[:k])
        idxs.append(cand[o[:k]])
    shape = tuple(x.shape[:-1]) + (k,)
    return torch.stack(vals).reshape(shape), torch.stack(idxs).reshape(shape).to(torch.int32)


@op("ArgMax")
def arg_max(inputs, attrs, cache=None):
    out = torch.argmax(inputs[0], dim=ints(inputs[1])[0])
    return out.to(DTYPES.get(attrs.get("output_type", "DT_INT64"), torch.int64))
