"""``RemoteTools(url, token)``: the expert tools of a ``vistrace serve`` host, used like local tools.

:meth:`RemoteTools.registry` gives a registry whose expert tools (``detect``, ``ocr``, ``ask`` ...,
every one the server offers) run on the server, while the model-free tools (crops, relations,
VPEval's modules, which call ``detect`` through the registry) run here — so a program runs
unchanged against either. Arguments are validated here first, with the same messages as
in-process; a server-side error comes back as the same exception class. Each step's trace
records that a remote expert answered, which backend, and the round-trip time.

The client pools connections (httpx), retries connection errors and 503/429 answers with
exponential backoff (honouring ``Retry-After``), and uploads each image once (by sha256).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from vistrace import errors as vt_errors
from vistrace.errors import ToolError, VistraceError
from vistrace.tools.registry import Tool

from .wire import pack, unpack

EXPERTS_ENV = "VISTRACE_EXPERTS"
TOKEN_ENV = "VISTRACE_EXPERTS_TOKEN"
_RETRY_STATUS = (429, 503)


class RemoteError(ToolError):
    """The expert server failed in a way that has no local exception class (or could not be reached)."""


def _raise_remote(status: int, body: Any, url: str) -> None:
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        raise RemoteError(f"expert server {url} answered HTTP {status}: {str(body)[:200]}")
    kind, message = str(err.get("type", "")), str(err.get("message", ""))
    cls = getattr(vt_errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, VistraceError) and cls is not VistraceError:
        if issubclass(cls, vt_errors.BackendUnavailable):
            raise cls(message, fix=err.get("fix") or err.get("hint"))
        raise cls(message, hint=err.get("hint"))
    tools = err.get("tools")
    hint = f"the server's tools: {', '.join(tools)}" if tools else None
    raise RemoteError(f"expert server {url} answered HTTP {status} ({kind}): {message}", hint=hint)


def _error_type(resp) -> str:
    try:
        return str(resp.json()["error"]["type"])
    except (ValueError, KeyError, TypeError):
        return ""


class RemoteTools:
    """A client of one expert server."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 120.0, retries: int = 3,
                 backoff: float = 0.25):
        import os

        if not url.startswith(("http://", "https://")):
            raise vt_errors.InputError(f"--experts must be an http(s) URL such as http://127.0.0.1:8765, got {url!r}")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._http = None
        self._uploaded: set[str] = set()
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- http
    def http(self):
        if self._http is None:
            import httpx

            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout,
                                      limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _request(self, method: str, path: str, **kw):
        import httpx

        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                resp = self.http().request(method, path, **kw)
            except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
                if attempt == self.retries:
                    raise RemoteError(f"cannot reach the expert server {self.url}: {exc}",
                                      hint="is `vistrace serve` running there? (check --experts URL)") from exc
            except httpx.TimeoutException as exc:
                raise RemoteError(f"the expert server {self.url} did not answer within {self.timeout:g} s") from exc
            else:
                if resp.status_code not in _RETRY_STATUS or attempt == self.retries:
                    return resp
                after = resp.headers.get("retry-after", "")
                delay = max(delay, float(after)) if after.replace(".", "", 1).isdigit() else delay
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def _json(self, resp) -> Any:
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        if resp.status_code >= 400:
            _raise_remote(resp.status_code, body, self.url)
        return body

    # ---------------------------------------------------------------- api
    def health(self) -> dict[str, Any]:
        return self._json(self._request("GET", "/healthz"))

    def tools(self) -> list[dict[str, Any]]:
        """The server's tools: name, expert flag, JSON schema, backends."""
        return self._json(self._request("GET", "/v1/tools"))["tools"]

    def upload(self, data: bytes) -> str:
        body = self._json(self._request("POST", "/v1/images", content=data,
                                        headers={"Content-Type": "application/octet-stream"}))
        return body["sha256"]

    def _payload(self, args: dict[str, Any]) -> dict[str, Any]:
        """The wire payload of ``args``, after uploading the images the server has not had from us."""
        payload, new = pack(args, self._uploaded)
        for h, data in new.items():
            self.upload(data)
            with self._lock:
                self._uploaded.add(h)
        return payload

    def call(self, name: str, args: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """Run one tool on the server: (value, info about who answered, with the round trip)."""
        t0 = time.perf_counter()
        resp = self._request("POST", f"/v1/tools/{name}", json={"args": self._payload(args)})
        if resp.status_code == 400 and _error_type(resp) == "MissingBlob":  # the server restarted: upload again
            with self._lock:
                self._uploaded.clear()
            resp = self._request("POST", f"/v1/tools/{name}", json={"args": self._payload(args)})
        body = self._json(resp)
        value = unpack(body["value"], what=f"the result of {name}")
        took = time.perf_counter() - t0
        info = {k: str(v) for k, v in dict(body.get("info") or {}).items()}
        server_s = float(body.get("seconds") or 0.0)
        info["reason"] = (f"remote expert at {self.url} answered in {took * 1000:.0f} ms "
                          f"(server {server_s * 1000:.0f} ms)" + (f"; {info['reason']}" if info.get("reason") else ""))
        info["backend"] = f"remote:{info.get('backend', '?')}"
        return value, info

    def registry(self, base=None):
        """A registry whose expert tools the server offers run there (see the module docstring)."""
        from vistrace.tools import default_registry

        local = base if base is not None else default_registry()
        offered = {t["name"] for t in self.tools() if t.get("expert")}
        # the aliases (objDet, LOC ...) resolve to the remote tools too
        return local.derived(lambda t: RemoteTool(t, self) if t.expert and t.name in offered else t)


class RemoteTool(Tool):
    """A tool declared here, answered by the server (built by :meth:`RemoteTools.registry`)."""

    def __init__(self, local: Tool, client: RemoteTools):  # noqa: D107 - the local declaration, the server
        self.__dict__.update(local.__dict__)
        self.client = client
        self.backends = []

    def invoke(self, args: dict[str, Any], registry=None, cache=None) -> tuple[Any, dict[str, str]]:
        """Validate here (the same messages as in-process), answer on the server (its cache applies)."""
        clean = self.validate(args)
        if self.precheck is not None:
            self.precheck(clean)
        return self.client.call(self.name, clean)


def remote_registry(url: str, token: str | None = None, base=None):
    """The registry for ``--experts URL``: expert tools on that server, the rest local."""
    return RemoteTools(url, token).registry(base)
