"""The wire format of ``vistrace serve``: tool arguments and results as JSON, blobs by content hash.

A value is encoded exactly by :mod:`vistrace.values.codec` (a JSON tree plus named blobs: PNG pixels,
NPY arrays). On the wire each blob is either inline (``{"b64": ...}``) or a reference to bytes
uploaded before with ``POST /v1/images`` (``{"sha256": ...}``), so an image used by many calls
crosses the network once. Nothing is unpickled and no path is ever read: a client can only send
bytes.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from vistrace.errors import InputError

INLINE_LIMIT = 4096  # blobs smaller than this travel inline


class WireError(InputError):
    """A request or response that does not follow the wire format (names the part and the problem)."""


class MissingBlob(WireError):
    """A payload refers to bytes the server does not hold (never uploaded, or dropped since): upload again."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def is_image(data: bytes) -> bool:
    """Whether bytes start like a PNG, JPEG or WebP file."""
    return data[:8] == b"\x89PNG\r\n\x1a\n" or data[:3] == b"\xff\xd8\xff" or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def pack(value: Any, uploaded: set[str] | None = None, *, inline: bool = False) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(JSON payload, blobs to upload first) for a value; ``uploaded`` hashes are referenced, not sent.

    Image blobs of at least :data:`INLINE_LIMIT` bytes are referenced by hash (the caller uploads
    those it has not uploaded before — the returned dict — and adds them to ``uploaded``); other
    blobs, and every blob when ``inline`` (responses), travel inline.
    """
    from vistrace.values.codec import encode

    tree, blobs = encode(value)
    refs: dict[str, Any] = {}
    to_upload: dict[str, bytes] = {}
    for name, data in blobs.items():
        if inline or len(data) < INLINE_LIMIT or not is_image(data):
            refs[name] = {"b64": base64.b64encode(data).decode("ascii")}
            continue
        h = sha256(data)
        refs[name] = {"sha256": h}
        if uploaded is None or h not in uploaded:
            to_upload[h] = data
    return {"tree": tree, "blobs": refs}, to_upload


def unpack(payload: Any, store: Any = None, *, what: str = "payload", check_inline=None) -> Any:
    """The value of a payload; ``store[sha256] -> bytes`` resolves references (MissingBlob when missing).

    ``check_inline(data)`` is called on every inline image blob before it is decoded (the server's
    pixel limit; referenced images were checked when they were uploaded)."""
    from vistrace.values.codec import decode

    if not isinstance(payload, dict) or "tree" not in payload:
        raise WireError(f"{what}: expected an object with 'tree' and 'blobs'")
    blobs: dict[str, bytes] = {}
    for name, ref in dict(payload.get("blobs") or {}).items():
        if isinstance(ref, dict) and "b64" in ref:
            try:
                blobs[name] = base64.b64decode(ref["b64"], validate=True)
            except (ValueError, TypeError) as exc:
                raise WireError(f"{what}: blob {name!r} is not valid base64") from exc
            if check_inline is not None and is_image(blobs[name]):
                check_inline(blobs[name])
        elif isinstance(ref, dict) and "sha256" in ref:
            data = store.get(ref["sha256"]) if store is not None else None
            if data is None:
                raise MissingBlob(f"{what}: blob {name!r} refers to sha256 {str(ref['sha256'])[:16]}… which was not "
                                "uploaded (POST /v1/images first)")
            blobs[name] = data
        else:
            raise WireError(f"{what}: blob {name!r} must be {{'b64': ...}} or {{'sha256': ...}}")
    try:
        return decode(payload["tree"], blobs)
    except (KeyError, ValueError, TypeError, OSError) as exc:
        raise WireError(f"{what}: cannot decode the value ({type(exc).__name__}: {exc})") from exc
