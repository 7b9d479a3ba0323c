"""Summaries, JSON forms and exact (cache) encoding of values and plain Python data.

``encode``/``decode`` round-trip every value type exactly: JSON for structure, PNG/NPY blobs for
pixels and arrays.  Nothing here unpickles: a cache entry can only ever produce values.
"""

from __future__ import annotations

import io
import json
from typing import Any

from .answer import Answer
from .arrays import DepthMap, Mask
from .base import Value
from .boxes import Box, Detections
from .geometry import Mesh, MesherChoice, MeshFile, PointCloud, PointStats
from .image import Image
from .keypoints import Keypoints
from .labels import Labels
from .text import TextLine, TextLines

MAX_SUMMARY = 200


def summarize(value: Any, limit: int = MAX_SUMMARY) -> str:
    """One short line describing any program value (for traces and planner observations)."""
    if isinstance(value, Value):
        text = value.summary()
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (list, tuple)):
        inner = ", ".join(summarize(v, 60) for v in value[:5])
        more = f", … {len(value) - 5} more" if len(value) > 5 else ""
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        text = f"{open_}{inner}{more}{close}"
    elif isinstance(value, dict):
        items = list(value.items())
        inner = ", ".join(f"{k!r}: {summarize(v, 60)}" for k, v in items[:5])
        more = f", … {len(items) - 5} more" if len(items) > 5 else ""
        text = "{" + inner + more + "}"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_jsonable(value: Any) -> Any:
    """A JSON-ready description (values use their ``to_json``; pixels are described, not embedded)."""
    if isinstance(value, Value):
        return value.to_json()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    return {"type": type(value).__name__, "repr": repr(value)[:200]}


# --- exact encoding -------------------------------------------------------------------------

def encode(value: Any) -> tuple[Any, dict[str, bytes]]:
    """Encode a value exactly: returns (json-able tree, blobs by name)."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes, ext: str) -> str:
        name = f"b{len(blobs)}.{ext}"
        blobs[name] = data
        return name

    def npy(array) -> str:
        import numpy as np

        buf = io.BytesIO()
        np.save(buf, np.asarray(array), allow_pickle=False)
        return blob(buf.getvalue(), "npy")

    def enc(v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return {"$list": [enc(x) for x in v]}
        if isinstance(v, tuple):
            return {"$tuple": [enc(x) for x in v]}
        if isinstance(v, dict):
            return {"$dict": [[enc(k), enc(x)] for k, x in v.items()]}
        if isinstance(v, Image):
            buf = io.BytesIO()
            exif = v.pil.info.get("exif")  # kept: the camera's focal length gives 3-D intrinsics
            v.pil.save(buf, format="PNG", **({"exif": exif} if exif else {}))
            d = v.to_json()
            d["png"] = blob(buf.getvalue(), "png")
            return {"$value": d}
        if isinstance(v, (Box, Detections, TextLine, TextLines, Labels, Keypoints, PointStats, MesherChoice)):
            return {"$value": v.to_json()}
        if isinstance(v, Mask):
            d = {"type": "Mask", "label": v.label, "score": v.score, "npy": npy(v.array)}
            return {"$value": d}
        if isinstance(v, DepthMap):
            d = {"type": "DepthMap", "convention": v.convention, "unit": v.unit, "npy": npy(v.array)}
            if v.source:
                d["source"] = v.source
            return {"$value": d}
        if isinstance(v, PointCloud):
            d = {"type": "PointCloud", "points": npy(v.points), "grid_shape": v.grid_shape, "stride": v.stride,
                 "intrinsics": v.intrinsics, "unit": v.unit, "assumptions": list(v.assumptions)}
            for name in ("colors", "normals", "pixels"):
                if getattr(v, name) is not None:
                    d[name] = npy(getattr(v, name))
            return {"$value": d}
        if isinstance(v, Mesh):
            d = {"type": "Mesh", "vertices": npy(v.vertices), "faces": npy(v.faces), "method": v.method,
                 "params": enc(v.params)}
            if v.colors is not None:
                d["colors"] = npy(v.colors)
            return {"$value": d}
        if isinstance(v, MeshFile):
            return {"$value": {"type": "MeshFile", "format": v.format, "name": v.name,
                               "data": blob(v.data, v.format)}}
        if isinstance(v, Answer):
            return {"$value": {"type": "Answer", "value": enc(v.value), "boxes": [b.to_json() for b in v.boxes],
                               "steps": list(v.steps), "explanation": v.explanation}}
        raise TypeError(f"cannot encode a {type(v).__name__}")

    return enc(value), blobs


def decode(tree: Any, blobs: dict[str, bytes]) -> Any:
    """Inverse of ``encode``."""

    def npy(name: str):
        import numpy as np

        return np.load(io.BytesIO(blobs[name]), allow_pickle=False)

    def dec(t: Any) -> Any:
        if not isinstance(t, dict):
            return t
        if "$list" in t:
            return [dec(x) for x in t["$list"]]
        if "$tuple" in t:
            return tuple(dec(x) for x in t["$tuple"])
        if "$dict" in t:
            return {dec(k): dec(x) for k, x in t["$dict"]}
        d = t["$value"]
        kind = d["type"]
        if kind == "Image":
            from PIL import Image as PILImage

            data = blobs[d["png"]]
            if data[:8] != b"\x89PNG\r\n\x1a\n":  # encode writes PNG; no other decoder is reachable from here
                raise ValueError(f"the pixels of an Image must be a PNG blob; {d['png']!r} is not one")
            pil = PILImage.open(io.BytesIO(data), formats=["PNG"])
            pil.load()
            return Image(pil, d["source"], offset=d["offset"], scale=d["scale"], root_size=d["root_size"])
        if kind == "Box":
            return Box.from_json(d)
        if kind == "Detections":
            return Detections.from_json(d)
        if kind == "TextLine":
            return TextLine.from_json(d)
        if kind == "TextLines":
            return TextLines.from_json(d)
        if kind == "Labels":
            return Labels.from_json(d)
        if kind == "Keypoints":
            return Keypoints.from_json(d)
        if kind == "Mask":
            return Mask(npy(d["npy"]), d["label"], d["score"])
        if kind == "DepthMap":
            return DepthMap(npy(d["npy"]), d["convention"], d["unit"], source=d.get("source", ""))
        if kind == "PointStats":
            return PointStats.from_json(d)
        if kind == "MesherChoice":
            return MesherChoice.from_json(d)
        if kind == "PointCloud":
            extra = {k: npy(d[k]) for k in ("colors", "normals", "pixels") if k in d}
            return PointCloud(npy(d["points"]), extra.get("colors"), extra.get("normals"), pixels=extra.get("pixels"),
                              grid_shape=d["grid_shape"], stride=d["stride"], intrinsics=d["intrinsics"],
                              unit=d["unit"], assumptions=d["assumptions"])
        if kind == "Mesh":
            return Mesh(npy(d["vertices"]), npy(d["faces"]), npy(d["colors"]) if "colors" in d else None,
                        method=d["method"], params=dec(d["params"]))
        if kind == "MeshFile":
            return MeshFile(blobs[d["data"]], d["format"], d["name"])
        if kind == "Answer":
            return Answer(dec(d["value"]), tuple(Box.from_json(b) for b in d["boxes"]), tuple(d["steps"]), d["explanation"])
        raise ValueError(f"unknown encoded value type {kind!r}")

    return dec(tree)


def dumps(value: Any) -> bytes:
    """Serialize a value to one byte string (a small zip: value.json + blobs)."""
    import zipfile

    tree, blobs = encode(value)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("value.json", json.dumps(tree))
        for name, data in blobs.items():
            zf.writestr(name, data)
    return buf.getvalue()


def loads(data: bytes) -> Any:
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        tree = json.loads(zf.read("value.json"))
        blobs = {n: zf.read(n) for n in zf.namelist() if n != "value.json"}
    return decode(tree, blobs)


def fingerprint(value: Any) -> str:
    """A content hash of a value, stable across processes (used for cache keys)."""
    import hashlib

    h = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, Image):
            h.update(b"I" + v.sha256.encode() + repr((v.offset, v.scale, v.root_size)).encode())
        elif isinstance(v, (PointCloud, Mesh)):
            h.update(b"G" + type(v).__name__.encode())
            for name in ("points", "colors", "normals", "pixels", "vertices", "faces"):
                a = getattr(v, name, None)
                if a is not None:
                    h.update(name.encode() + repr(a.shape).encode() + a.tobytes())
            h.update(json.dumps({k: x for k, x in v.to_json().items() if k != "sha256"}, sort_keys=True,
                                default=str).encode())
        elif isinstance(v, MeshFile):
            h.update(b"F" + v.format.encode() + v.name.encode() + v.sha256.encode())
        elif isinstance(v, (Mask, DepthMap)):
            h.update(b"A" + type(v).__name__.encode() + v.array.tobytes() + repr(v.array.shape).encode())
            h.update(json.dumps({k: x for k, x in v.to_json().items() if k not in ("min", "max")}, sort_keys=True).encode())
        elif isinstance(v, Value):
            h.update(b"V" + json.dumps(v.to_json(), sort_keys=True, default=str).encode())
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=repr):
                feed(k)
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[" if isinstance(v, list) else b"(")
            for x in v:
                feed(x)
            h.update(b"]")
        else:
            h.update(type(v).__name__.encode() + b":" + repr(v).encode())

    feed(value)
    return h.hexdigest()
