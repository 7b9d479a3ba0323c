"""The isolated worker, and the wire it shares with the parent (:mod:`.isolate`).

Started as ``python -I -B -m vistrace.sandbox.isolate_child --down FD --up FD --as BYTES --cpu S
--nofile N --fsize BYTES``: it applies those limits to itself first, then reads the ``start`` frame
(program, limits, tool signatures, input values), runs the interpreter with a :class:`ParentCaller`
(every ``begin``/``call`` is a request to the parent, which runs the real tool) and sends the outcome.

On the wire a message is a frame: ``!II`` (JSON length, blob count), the JSON, then each blob as
``!Q`` length + bytes.  Values are JSON trees with tags (``$l`` list, ``$t`` tuple, ``$s`` set, ``$fs``
frozenset, ``$d`` dict as pairs, ``$r`` range, ``$img`` raw pixels, ``$v`` a :mod:`vistrace.values.codec`
tree, ``$h`` a handle to a value the parent sent).  Nothing is pickled.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from typing import Any

from vistrace.errors import IsolationError, Location, RuntimeProgramError, VistraceError

EXIT_MEMORY = 86        # the worker ran out of memory and could not even report it
EXIT_PARENT_GONE = 87   # the worker's pipe from the parent closed
EXIT_NO_FILTER = 88     # the system-call filter could not be installed (the parent says so; no silent run without it)
MAX_DEPTH = 200         # nesting of a value that crosses the pipe
MAX_BLOBS = 100_000
MAX_PNG_PIXELS = 50_000_000
_HEADER = struct.Struct("!II")   # JSON length, number of blobs
_BLOB = struct.Struct("!Q")      # blob length
_BANDS = {"L": 1, "RGB": 3, "RGBA": 4}


class ProtocolError(IsolationError):
    """A message from the worker that does not follow the protocol (the worker is stopped)."""

    def __init__(self, message: str, **kw):
        super().__init__(f"the isolated worker broke the message protocol: {message}", reason="protocol", **kw)


# ------------------------------------------------------------------------------------- frames
def frame_parts(msg: dict, blobs: list[bytes]) -> list[bytes]:
    """One message as the byte strings to write (header, JSON, then each blob with its length)."""
    data = json.dumps(msg, separators=(",", ":")).encode()
    parts = [_HEADER.pack(len(data), len(blobs)), data]
    for b in blobs:
        parts += [_BLOB.pack(len(b)), b]
    return parts


class FrameParser:
    """Incremental reader of the worker's frames, bounded by ``max_bytes`` per frame."""

    def __init__(self, max_bytes: int):
        self.buf = bytearray()
        self.max = max_bytes

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> tuple[dict, list[bytes]] | None:
        buf = self.buf
        if len(buf) < _HEADER.size:
            return None
        size, count = _HEADER.unpack_from(buf)
        if size > self.max or count > MAX_BLOBS:
            raise ProtocolError(f"a frame announces {size} bytes of JSON and {count} blobs")
        pos, total, spans = _HEADER.size + size, size, []
        for _ in range(count):
            if len(buf) < pos + _BLOB.size:
                return None
            (n,) = _BLOB.unpack_from(buf, pos)
            pos += _BLOB.size
            total += n
            if total > self.max:
                raise ProtocolError(f"a frame is larger than {self.max} bytes")
            spans.append((pos, pos + n))
            pos += n
        if len(buf) < pos:
            return None
        try:
            msg = json.loads(bytes(buf[_HEADER.size:_HEADER.size + size]))
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"a frame's JSON is not valid ({exc})") from None
        blobs = [bytes(buf[a:b]) for a, b in spans]
        del buf[:pos]
        if not isinstance(msg, dict):
            raise ProtocolError("a message is not a JSON object")
        return msg, blobs


def read_frame(f) -> tuple[dict, list[bytes]] | None:
    """A frame from a blocking binary file (the worker's side); None at end of file."""
    head = f.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    size, count = _HEADER.unpack(head)
    msg = json.loads(f.read(size))
    blobs = []
    for _ in range(count):
        (n,) = _BLOB.unpack(f.read(_BLOB.size))
        blobs.append(f.read(n))
    return msg, blobs


# ------------------------------------------------------------------------------------- values
class Packer:
    """Program values <-> JSON trees + blobs.  The parent gives every value object it sends a handle;
    the child sends such objects back as ``{"$h": n}``.  The parent (``trusting=False``) recomputes
    whatever it decodes (image hashes included) and accepts no new handles from the child."""

    def __init__(self, *, issue: bool, trusting: bool):
        self.issue, self.trusting = issue, trusting
        self.objects: dict[int, Any] = {}   # handle -> value
        self.handles: dict[int, int] = {}   # id(value) -> handle
        self.lock = threading.RLock()

    def pack(self, value: Any) -> tuple[Any, list[bytes]]:
        blobs: list[bytes] = []
        with self.lock:
            return self._enc(value, blobs, 0), blobs

    def unpack(self, tree: Any, blobs: list[bytes]) -> Any:
        with self.lock:
            try:
                return self._dec(tree, blobs, 0)
            except ProtocolError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a malformed tree breaks, it is the sender's fault
                raise ProtocolError(f"a value cannot be decoded ({type(exc).__name__}: {exc})") from None

    def _enc(self, v: Any, blobs: list[bytes], depth: int) -> Any:  # noqa: C901 - one dispatch over kinds
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if depth > MAX_DEPTH:
            raise ValueError(f"a value nested deeper than {MAX_DEPTH} levels cannot cross the isolation boundary")
        d = depth + 1
        if isinstance(v, (list, tuple, set, frozenset)):
            tag = {list: "$l", tuple: "$t", set: "$s", frozenset: "$fs"}.get(type(v), "$l")
            return {tag: [self._enc(x, blobs, d) for x in v]}
        if isinstance(v, dict):
            return {"$d": [[self._enc(k, blobs, d), self._enc(x, blobs, d)] for k, x in v.items()]}
        if isinstance(v, range):
            return {"$r": [v.start, v.stop, v.step]}
        if type(v).__name__ in ("dict_keys", "dict_values", "dict_items"):
            return {"$l": [self._enc(x, blobs, d) for x in v]}
        from vistrace.values import Image, Value

        if not isinstance(v, Value):
            if type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0:
                return self._enc(v.item(), blobs, depth)
            raise TypeError(f"a {type(v).__name__} cannot cross the isolation boundary")
        h = self.handles.get(id(v))
        if h is not None and self.objects.get(h) is v:
            return {"$h": h}
        if isinstance(v, Image):
            meta = {"mode": v.pil.mode, "size": list(v.size), "source": v.source, "sha256": v.sha256,
                    "offset": list(v.offset), "scale": list(v.scale), "root_size": list(v.root_size)}
            blobs.append(v.pil.tobytes())
            node = {"$img": meta, "px": len(blobs) - 1}
        else:
            from vistrace.values.codec import encode

            tree, named = encode(v)
            names = {}
            for name, data in named.items():
                blobs.append(data)
                names[name] = len(blobs) - 1
            node = {"$v": tree, "b": names}
        if self.issue:
            h = len(self.objects) + 1
            self.objects[h], self.handles[id(v)] = v, h
            node["h"] = h
        return node

    def _dec(self, t: Any, blobs: list[bytes], depth: int) -> Any:  # noqa: C901
        if t is None or isinstance(t, (bool, int, float, str)):
            return t
        if not isinstance(t, dict) or depth > MAX_DEPTH + 1:
            raise ProtocolError("a value tree holds an untagged or too deeply nested node")
        d = depth + 1
        for tag, kind in (("$l", list), ("$t", tuple), ("$s", set), ("$fs", frozenset)):
            if tag in t:
                return kind(self._dec(x, blobs, d) for x in t[tag])
        if "$d" in t:
            return {self._dec(k, blobs, d): self._dec(x, blobs, d) for k, x in t["$d"]}
        if "$r" in t:
            a, b, c = t["$r"]
            if not all(type(x) is int for x in (a, b, c)):
                raise ProtocolError("a range holds non-integers")
            return range(a, b, c)
        if "$h" in t:
            obj = self.objects.get(t["$h"]) if type(t["$h"]) is int else None
            if obj is None:
                raise ProtocolError(f"unknown value handle {t['$h']!r}")
            return obj
        if "h" in t and not self.trusting:
            raise ProtocolError("the worker cannot issue value handles")
        if "$img" in t:
            value = self._image(t["$img"], blobs[t["px"]])
        elif "$v" in t:
            from vistrace.values.codec import decode

            named = {str(name): blobs[i] for name, i in t["b"].items()}
            if not self.trusting:
                for data in named.values():
                    _check_png(data)
            value = decode(t["$v"], named)
        else:
            raise ProtocolError(f"unknown value node with keys {sorted(t)[:5]}")
        if "h" in t:
            self.objects[t["h"]], self.handles[id(value)] = value, t["h"]
        return value

    def _image(self, meta: dict, data: bytes):
        from PIL import Image as PILImage

        from vistrace.values import Image

        mode, (w, h) = meta["mode"], meta["size"]
        if mode not in _BANDS or type(w) is not int or type(h) is not int or w <= 0 or h <= 0 \
                or len(data) != w * h * _BANDS[mode]:
            raise ProtocolError(f"an image's pixels do not match its mode and size ({mode!r}, {w!r}x{h!r})")
        pil = PILImage.frombytes(mode, (w, h), data)
        return Image(pil, str(meta["source"]), offset=meta["offset"], scale=meta["scale"], root_size=meta["root_size"],
                     sha256=str(meta["sha256"]) if self.trusting else None)


def _check_png(data: bytes) -> None:
    """Refuse a PNG from the worker whose header promises more than MAX_PNG_PIXELS (a decompression bomb)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        w, h = struct.unpack("!II", data[16:24])
        if w * h > MAX_PNG_PIXELS:
            raise ProtocolError(f"an image of {w}x{h} pixels is too large")


# ------------------------------------------------------------------------------------- errors
_EXTRA = ("limit", "value", "fix", "brief", "reason", "returncode")   # attributes of some error classes
_ABSENT = object()


def error_record(exc: VistraceError, token: int | None = None) -> dict:
    """A vistrace error as JSON: its class names (most specific first), text, location and extras."""
    w = exc.where
    rec = {"classes": [c.__name__ for c in type(exc).__mro__ if isinstance(c, type) and issubclass(c, VistraceError)],
           "message": exc.message, "hint": exc.hint, "where": [w.line, w.col, w.step, w.tool], "token": token}
    for k in _EXTRA:
        v = getattr(exc, k, _ABSENT)
        if v is None or isinstance(v, (str, int, float)):
            rec[k] = v
    return rec


def error_from_record(rec: Any, originals: dict[int, BaseException] | None = None) -> VistraceError:
    """The error a record describes: the parent's own object when it carries a token, else a new
    instance of the most specific class of :mod:`vistrace.errors` it names."""
    from vistrace import errors

    if not isinstance(rec, dict):
        raise ProtocolError("an error record is not an object")

    def num(x):
        return x if type(x) is int else None

    message = str(rec.get("message", ""))[:20_000]
    hint = rec.get("hint") if isinstance(rec.get("hint"), str) else None
    raw = rec.get("where")
    raw = raw if isinstance(raw, list) and len(raw) == 4 else [None] * 4
    where = Location(num(raw[0]), num(raw[1]), num(raw[2]), raw[3] if isinstance(raw[3], str) else None)
    token = rec.get("token")
    exc = originals.get(token) if originals is not None and type(token) is int else None
    if exc is None:
        names = rec.get("classes") if isinstance(rec.get("classes"), list) else []
        cls = next((getattr(errors, n) for n in names if isinstance(n, str) and isinstance(getattr(errors, n, None), type)
                    and issubclass(getattr(errors, n), VistraceError)), RuntimeProgramError)
        exc = cls.__new__(cls)
        Exception.__init__(exc, message)
        if isinstance(exc, errors.ProgramError):
            exc.problems = []
        for k in _EXTRA:
            if k in rec:
                v = rec[k]
                ok = isinstance(v, str) if k in ("limit", "fix", "brief", "reason") else type(v) in (int, float)
                setattr(exc, k, v if ok else None)
    exc.args = (message,)
    exc.message, exc.hint, exc.where = message, hint, where
    return exc


# ------------------------------------------------------------------------------------- the worker
_OPTIONS = ("down", "up", "as", "cpu", "nofile", "fsize", "filter")


def parse_args(argv: list[str]) -> dict[str, int]:
    """``--NAME INT`` pairs; every option of :data:`_OPTIONS` is required."""
    opts: dict[str, int] = {}
    it = iter(argv)
    for flag in it:
        value = next(it, None)
        if not flag.startswith("--") or flag[2:] not in _OPTIONS or value is None:
            raise SystemExit(f"isolate_child: unexpected argument {flag!r}")
        opts[flag[2:]] = int(value)
    missing = [o for o in _OPTIONS if o not in opts]
    if missing:
        raise SystemExit(f"isolate_child: missing --{' --'.join(missing)}")
    return opts


def apply_rlimits(opts: dict[str, int]) -> None:
    """Limit this process: no core dumps, address space, CPU seconds (SIGXCPU, then SIGKILL one second
    later), open files, file size.  Soft and hard limits are set, so the worker cannot raise them
    back (without CAP_SYS_RESOURCE)."""
    import resource

    def cap(res, soft: int, hard: int) -> None:
        _, old_hard = resource.getrlimit(res)
        if old_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, old_hard), min(hard, old_hard)
        resource.setrlimit(res, (soft, hard))

    cap(resource.RLIMIT_CORE, 0, 0)
    cap(resource.RLIMIT_AS, opts["as"], opts["as"])
    cap(resource.RLIMIT_CPU, opts["cpu"], opts["cpu"] + 1)
    cap(resource.RLIMIT_NOFILE, opts["nofile"], opts["nofile"])
    cap(resource.RLIMIT_FSIZE, opts["fsize"], opts["fsize"])


class Channel:
    """The worker's end of the pipes: requests wait for the reply with their id (a reader thread
    sorts the replies, so calls from the interpreter's worker threads overlap)."""

    def __init__(self, down: int, up: int):
        self.rfile = os.fdopen(down, "rb")
        self.wfile = os.fdopen(up, "wb")
        self.wlock = threading.Lock()
        self.cond = threading.Condition()
        self.replies: dict[Any, tuple[dict, list[bytes]]] = {}
        self.next_id = 0

    def read(self) -> tuple[dict, list[bytes]]:
        try:
            item = read_frame(self.rfile)
        except (OSError, ValueError, struct.error):
            item = None
        if item is None:   # the parent is gone, or stopped listening: nothing left to do
            os._exit(EXIT_PARENT_GONE)
        return item

    def listen(self) -> None:
        threading.Thread(target=self._reader, daemon=True, name="vistrace-isolate-reader").start()

    def _reader(self) -> None:
        while True:
            msg, blobs = self.read()
            with self.cond:
                self.replies[msg.get("id")] = (msg, blobs)
                self.cond.notify_all()

    def send(self, msg: dict, blobs: list[bytes] = ()) -> None:
        try:
            with self.wlock:
                for part in frame_parts(msg, list(blobs)):
                    self.wfile.write(part)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            os._exit(EXIT_PARENT_GONE)

    def request(self, msg: dict, blobs: list[bytes] = ()) -> tuple[dict, list[bytes]]:
        with self.cond:
            self.next_id += 1
            rid = msg["id"] = self.next_id
        self.send(msg, blobs)
        with self.cond:
            while rid not in self.replies:
                self.cond.wait()
            return self.replies.pop(rid)


class SignatureTable:
    """The :class:`ToolTable` the worker compiles against: names, parameters, renames and presets
    (all the interpreter needs to bind arguments; types are checked by the tools in the parent)."""

    def __init__(self, records: list[dict], presets: dict[str, dict]):
        from inspect import Parameter

        from vistrace.signature import ANY, ParamSpec, Signature

        self.sigs = {}
        for r in records:
            params = tuple(ParamSpec(name, ANY, Parameter.empty if required else None) for name, required in r["params"])
            self.sigs[r["name"]] = Signature(r["name"], r["tool"], params, renames=dict(r["renames"]),
                                             presets=dict(presets.get(r["name"]) or {}))

    def signature(self, name: str):
        return self.sigs.get(name)

    def suggest(self, name: str) -> None:
        return None


class ParentCaller:
    """A :class:`ToolCaller` whose steps and calls are answered by the parent over the pipe."""

    def __init__(self, channel: Channel, packer: Packer):
        self.channel, self.packer = channel, packer
        self.raised: dict[int, tuple[BaseException, Any]] = {}   # id(error) -> (error, the parent's token)

    def begin(self, sig, site) -> int:
        reply, _ = self.channel.request({"op": "begin", "name": sig.name,
                                         "site": [site.line, site.col, site.end_line, site.source, site.target]})
        return reply["step"]

    def call(self, step: int, sig, args: dict[str, Any]) -> Any:
        try:
            tree, blobs = self.packer.pack(args)
        except (TypeError, ValueError) as exc:
            raise RuntimeProgramError(f"an argument of {sig.name} cannot be passed to the tool: {exc}") from None
        reply, rblobs = self.channel.request({"op": "call", "step": step, "name": sig.name, "args": tree}, blobs)
        if "error" in reply:
            exc = error_from_record(reply["error"])
            self.raised[id(exc)] = (exc, reply["error"].get("token"))
            raise exc
        return self.packer.unpack(reply["value"], rblobs)

    def token(self, exc: BaseException) -> Any:
        hit = self.raised.get(id(exc))
        return hit[1] if hit is not None and hit[0] is exc else None


def serve(channel: Channel, memory_mb: int) -> None:
    """Read the start frame, run the program, send how it ended."""
    from vistrace.errors import LimitExceeded

    from .interpreter import Interpreter
    from .limits import Limits
    from .program import parse

    msg, blobs = channel.read()
    channel.listen()
    packer = Packer(issue=False, trusting=True)
    caller = ParentCaller(channel, packer)
    reply: tuple[dict, list[bytes]]
    try:
        if msg.get("op") != "start":
            raise RuntimeError(f"the first message is {msg.get('op')!r}, not 'start'")
        inputs, presets = packer.unpack(msg["values"], blobs)
        limits = Limits(**msg["limits"])
        prog = parse(msg["program"], limits=limits, name=msg["name"])
        interp = Interpreter(prog, SignatureTable(msg["signatures"], presets), caller, limits, int(msg["parallel"]))
        outcome = interp.run(inputs)
        try:   # one pack for the value and the module values, so they share the blob list
            tree, blobs = packer.pack([outcome.value, [m.value for m in outcome.modules]])
            value, values = tree["$l"][0], tree["$l"][1]["$l"]
            modules = [dict(m.__dict__, value=v) for m, v in zip(outcome.modules, values)]
            reply = ({"op": "done", "outcome": {"value": value, "style": outcome.style, "modules": modules,
                                                "printed": list(outcome.printed)}}, blobs)
        except (TypeError, ValueError) as exc:
            raise RuntimeProgramError(f"the program's result cannot leave the isolated worker: {exc}") from None
    except VistraceError as exc:
        if isinstance(exc, LimitExceeded) and exc.limit == "memory":
            exc.value = memory_mb
            exc.message += f" (the isolated worker's memory limit is memory_mb={memory_mb})"
        reply = ({"op": "error", "error": error_record(exc, caller.token(exc))}, [])
    except MemoryError:
        err = IsolationError(f"the isolated worker ran out of memory (limit memory_mb={memory_mb})", reason="memory",
                             hint="raise Isolation(memory_mb=...)")
        reply = ({"op": "error", "error": error_record(err)}, [])
    except Exception as exc:  # noqa: BLE001 - reported as the in-process run reports it: an internal error
        reply = ({"op": "internal", "message": f"{type(exc).__name__}: {exc}"}, [])
    channel.send(*reply)


def main(argv: list[str] | None = None) -> None:
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    apply_rlimits(opts)
    if opts["filter"]:
        from . import syscalls

        try:
            syscalls.install()
        except OSError as exc:
            sys.stderr.write(f"isolate_child: {exc}\n")
            sys.stderr.flush()
            os._exit(EXIT_NO_FILTER)
    import faulthandler

    faulthandler.enable()
    try:
        serve(Channel(opts["down"], opts["up"]), opts["as"] // (1024 * 1024))
    except MemoryError:
        os._exit(EXIT_MEMORY)
    os._exit(0)


if __name__ == "__main__":
    main()
