"""The HTTP app behind ``vistrace serve``: every registered tool as an endpoint, with limits and metrics.

Endpoints: ``GET /healthz``; ``GET /v1/tools`` (each tool's JSON schema, expert flag, backends);
``POST /v1/images`` (raw image bytes; answers their sha256, usable in later calls);
``POST /v1/tools/{name}`` (``{"args": <wire payload>}`` -> ``{"value", "info", "seconds"}``);
``GET /metrics`` (Prometheus text); ``/docs`` (OpenAPI).

Errors are JSON ``{"error": {"type", "message", "hint"}}`` with the status saying what went wrong:
401 no or wrong token; 404 unknown tool (the list of tools is in the body); 413 body or image too
large; 400 corrupt image or payload; 422 invalid arguments (ToolArgumentError names the argument);
424 no backend can answer here (BackendUnavailable, with the fix); 429 too many requests in flight
(``Retry-After``); 504 the tool ran past the per-request timeout.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations (Request) at definition time

import asyncio
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from vistrace.errors import BackendUnavailable, InputError, ToolError, VistraceError

from .wire import WireError, is_image, pack, sha256, unpack


log = logging.getLogger("vistrace.serve")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask of the server."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000
    timeout_s: float = 120.0
    max_inflight: int = 64
    store_bytes: int = 512 * 1024 * 1024


class BlobStore:
    """Uploaded images by sha256, least recently used dropped first beyond ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        h = sha256(data)
        with self._lock:
            if h in self._items:
                self._items.move_to_end(h)
                return h
            self._items[h] = data
            self._size += len(data)
            while self._size > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._size -= len(old)
        return h

    def get(self, h: str) -> bytes | None:
        with self._lock:
            data = self._items.get(h)
            if data is not None:
                self._items.move_to_end(h)
            return data


class Metrics:
    """The server's Prometheus metrics (their own registry, so several apps never clash)."""

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("vistrace_requests_total", "Tool requests by tool and HTTP status",
                                ["tool", "status"], registry=self.registry)
        self.latency = Histogram("vistrace_request_seconds", "Tool request latency", ["tool"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.cache_hits = Counter("vistrace_cache_hits_total", "Tool results answered from the result cache", ["tool"],
                                  registry=self.registry)
        self.inflight = Gauge("vistrace_inflight_requests", "Tool requests being answered", registry=self.registry)
        self.uploads = Counter("vistrace_image_uploads_total", "Images uploaded", registry=self.registry)
        self.batch_size = Histogram("vistrace_batch_size", "Requests answered together by one backend call",
                                    ["backend"], registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64))

    def text(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def error_body(exc: BaseException) -> dict[str, Any]:
    return {"error": {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc)),
                      "hint": getattr(exc, "hint", None), "fix": getattr(exc, "fix", None)}}


def _status_for(exc: VistraceError) -> int:
    if isinstance(exc, BackendUnavailable):
        return 424
    if isinstance(exc, ToolError):  # ToolArgumentError included: the tool refused these inputs
        return 422
    if isinstance(exc, (WireError, InputError)):
        return 400
    return 500


def check_image(data: bytes, limits: ServeLimits) -> tuple[int, int]:
    """(width, height) of uploaded image bytes, decoded by the same loader as every other image
    (:func:`vistrace.values.imageio.load`): 413 past the pixel limit (refused from the header, before
    decoding), 400 for a corrupt, truncated, empty or unsupported file (SVG, PDF...)."""
    from vistrace.values.imageio import ImageTooLarge, load

    try:
        loaded = load(data, name="(uploaded bytes)", limit=limits.max_pixels)
    except ImageTooLarge as exc:
        raise _HTTPError(413, "ImageTooLarge", exc.message, hint="downscale the image before sending it; the "
                         "server's limit is `vistrace serve --max-megapixels`") from exc
    except InputError as exc:
        raise _HTTPError(400, "CorruptImage", exc.message, hint=exc.hint) from exc
    return loaded.stored_size


class _HTTPError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers, self.extra = status, kind, message, headers or {}, extra


def create_app(registry=None, *, token: str | None = None, tools: list[str] | None = None,
               limits: ServeLimits | None = None, cache: Any = True, batching=None, ray=None):
    """The FastAPI app serving ``registry`` (default: every built-in tool and installed backend).

    ``batching``: a :class:`~vistrace.serve.batching.BatchConfig` to group concurrent requests of
    backends that can run batches (None: one request per backend call).
    ``ray``: a connected :class:`~vistrace.serve.ray_serve.RayCluster`; the available expert backends
    then run as its Ray Serve deployments (batching, if any, happens in their replicas)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response

    from vistrace import __version__
    from vistrace.tools import default_registry

    reg = registry if registry is not None else default_registry()
    limits = limits or ServeLimits()
    if cache is True:
        from vistrace.trace.cache import ResultCache

        cache = ResultCache()
    elif cache is False:
        cache = None
    allowed = set(tools) if tools else None
    store = BlobStore(limits.store_bytes)
    metrics = Metrics()
    if ray is not None:
        from .ray_serve import ray_registry

        reg = ray_registry(reg, ray, timeout_s=limits.timeout_s, batching=batching, tools=tools)
    elif batching is not None:
        from .batching import batched_registry

        reg = batched_registry(reg, batching, lambda name, n: metrics.batch_size.labels(name).observe(n))
    inflight = {"n": 0}
    lock = threading.Lock()
    app = FastAPI(title="vistrace expert server", version=__version__,
                  description="The vistrace tools over HTTP (see docs/serve.md).")
    app.state.store, app.state.metrics, app.state.registry = store, metrics, reg

    @app.exception_handler(_HTTPError)
    async def _http_error(request, exc: _HTTPError):
        return JSONResponse({"error": {"type": exc.kind, "message": exc.message, **exc.extra}}, status_code=exc.status,
                            headers=exc.headers)

    def authorize(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else request.headers.get("x-vistrace-token", "")
        if not given or not secrets.compare_digest(given.encode(), token.encode()):
            raise _HTTPError(401, "Unauthorized", "this server needs a token: send 'Authorization: Bearer TOKEN'",
                             headers={"WWW-Authenticate": "Bearer"})

    async def body_of(request: Request) -> bytes:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limits.max_body_bytes:
            raise _HTTPError(413, "BodyTooLarge", f"the body is {length} bytes; the limit is {limits.max_body_bytes}")
        data = await request.body()
        if len(data) > limits.max_body_bytes:
            raise _HTTPError(413, "BodyTooLarge", f"the body is {len(data)} bytes; the limit is {limits.max_body_bytes}")
        return data

    def served(name: str):
        found = reg.resolve(name)
        t = found[0] if found else None
        if t is None or (allowed is not None and t.name not in allowed):
            names = sorted(x.name for x in reg.tools() if allowed is None or x.name in allowed)
            raise _HTTPError(404, "UnknownTool", f"no tool {name!r} on this server", tools=names)
        return t

    @app.get("/healthz")
    async def healthz():
        out = {"ok": True, "version": __version__, "tools": len([t for t in reg.tools()
                                                                  if allowed is None or t.name in allowed])}
        if ray is not None:
            out["ray"] = list(ray.apps)
        return out

    @app.get("/v1/tools")
    async def list_tools(request: Request):
        authorize(request)
        out = []
        for t in reg.tools():
            if allowed is not None and t.name not in allowed:
                continue
            out.append({"name": t.name, "expert": t.expert, "category": t.category, "version": t.version,
                        "schema": t.json_schema(), "backends": [b.describe() for b in t.backends]})
        return {"tools": out}

    @app.post("/v1/images")
    async def upload(request: Request):
        authorize(request)
        data = await body_of(request)
        if not is_image(data):
            raise _HTTPError(400, "CorruptImage", "the upload is not a PNG, JPEG or WebP file (send the file's bytes)")
        w, h = check_image(data, limits)
        metrics.uploads.inc()
        return {"sha256": store.put(data), "width": w, "height": h, "bytes": len(data)}

    @app.post("/v1/tools/{name}")
    async def call(name: str, request: Request):
        authorize(request)
        t = served(name)
        data = await body_of(request)
        with lock:
            if inflight["n"] >= limits.max_inflight:
                metrics.requests.labels(t.name, "429").inc()
                raise _HTTPError(429, "Busy", f"{inflight['n']} requests in flight; the limit is {limits.max_inflight}",
                                 headers={"Retry-After": "1"})
            inflight["n"] += 1
        metrics.inflight.inc()
        t0 = time.perf_counter()
        status = "200"
        try:
            try:
                import json

                body = json.loads(data or b"{}")
                # referenced images were checked (decodable, within the pixel limit) when uploaded
                args = unpack(body.get("args", {"tree": {"$dict": []}, "blobs": {}}), store, what="args",
                              check_inline=lambda data: check_image(data, limits))
                if not isinstance(args, dict):
                    raise WireError("args: expected an object of argument names to values")
            except (ValueError, AttributeError) as exc:
                raise _HTTPError(400, "BadRequest", f"the body is not a JSON object with 'args': {exc}") from exc
            try:
                value, info = await asyncio.wait_for(run_in_threadpool(t.invoke, args, reg, cache),
                                                     timeout=limits.timeout_s)
            except asyncio.TimeoutError as exc:
                raise _HTTPError(504, "Timeout", f"tool {t.name!r} ran past the {limits.timeout_s:g} s request "
                                 "timeout") from exc
            except VistraceError as exc:
                status = str(_status_for(exc))
                return JSONResponse(error_body(exc), status_code=int(status))
            except Exception as exc:  # noqa: BLE001 - a backend's own failure: JSON 500 naming it, server keeps going
                log.exception("tool %s failed", t.name)
                status = "500"
                return JSONResponse(error_body(exc), status_code=500)
            if info.get("cache_hit"):
                metrics.cache_hits.labels(t.name).inc()
            payload, _ = pack(value, inline=True)
            return {"value": payload, "info": dict(info), "seconds": time.perf_counter() - t0}
        except _HTTPError as exc:
            status = str(exc.status)
            raise
        except WireError as exc:
            status = "400"
            return JSONResponse(error_body(exc), status_code=400)
        finally:
            with lock:
                inflight["n"] -= 1
            metrics.inflight.dec()
            metrics.requests.labels(t.name, status).inc()
            metrics.latency.labels(t.name).observe(time.perf_counter() - t0)

    @app.get("/metrics")
    async def prometheus(request: Request):
        authorize(request)
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return app


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token."""
    if host not in LOOPBACK and not token:
        raise InputError(f"serving on {host} (not loopback) needs a token",
                         hint="pass --token TOKEN (or VISTRACE_SERVE_TOKEN); clients send it as 'Authorization: Bearer TOKEN'")
