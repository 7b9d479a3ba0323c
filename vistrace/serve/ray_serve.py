"""``vistrace serve --ray``: the expert backends as Ray Serve deployments, behind the same HTTP API.

The front door is unchanged — the FastAPI app of :mod:`vistrace.serve.app` with its token, limits,
result cache and metrics. What changes is who runs a backend: every *available* expert backend
becomes one Ray Serve deployment (an application named ``vistrace-<backend>``), with its own
replicas, CPUs and GPU fraction, and the app's tools call it through a deployment handle. Ray
places the replicas on the machines of the cluster and balances requests over them; each replica
loads its model once.

Settings (``vistrace.toml``, see :func:`RayConfig.from_settings`)::

    [serve.ray]
    address = "auto"          # join a running cluster (`ray start --head`); omit for a local instance
    num_cpus = 8              # CPUs of a local instance (omit: all of this machine)

    [serve.ray.default]       # every deployment
    replicas = 1
    num_cpus = 1
    num_gpus = 0
    max_ongoing_requests = 16

    [serve.ray.backends.yolo] # one backend
    replicas = 2
    num_gpus = 0.5

Arguments and results cross to the replicas in the wire format of :mod:`vistrace.serve.wire` (the
value codec: JSON plus PNG/NPY blobs), and errors as ``{"type", "message", "hint", "fix"}`` — the
front door re-raises the same vistrace exception class, so HTTP statuses are as without Ray.
Backends that call other tools (a ``ctx`` parameter) stay in the front process; so do backends
that are not available there (they answer 424 as before).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import logging
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

from vistrace.errors import InputError, ToolError, VistraceError
from vistrace.tools.backends import Backend, WrappedBackend, accepts

from .wire import pack, unpack

log = logging.getLogger("vistrace.serve")
APP_PREFIX = "vistrace-"


class RayBackendError(ToolError):
    """A Ray replica could not answer (it died, or Ray could not reach it); the message says which."""


@dataclass(frozen=True)
class DeploymentOptions:
    """How one backend is deployed: replicas and the resources each replica reserves."""

    replicas: int = 1
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_ongoing_requests: int = 16

    def __post_init__(self):
        if self.replicas < 1:
            raise InputError(f"ray deployment: replicas must be at least 1, got {self.replicas}")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise InputError("ray deployment: num_cpus and num_gpus must not be negative")
        if self.max_ongoing_requests < 1:
            raise InputError(f"ray deployment: max_ongoing_requests must be at least 1, got {self.max_ongoing_requests}")

    @classmethod
    def from_table(cls, table: dict[str, Any], base: "DeploymentOptions | None" = None, where: str = "") -> "DeploymentOptions":
        base = base or cls()
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}", hint="known: " + ", ".join(known))
        values = {}
        for k, v in table.items():
            try:
                values[k] = int(v) if k in ("replicas", "max_ongoing_requests") else float(v)
            except (TypeError, ValueError):
                raise InputError(f"{where}: {k} expects a number, got {v!r}") from None
        return replace(base, **values)


def default_registry_factory():
    from vistrace.tools import default_registry

    return default_registry()


@dataclass(frozen=True)
class RayConfig:
    """Where Ray runs and how each backend is deployed (``options_for(backend)``)."""

    address: str | None = None        # None: start a local Ray instance; "auto" or "ray://host:10001": join
    num_cpus: int | None = None       # CPUs of a local instance
    default: DeploymentOptions = field(default_factory=DeploymentOptions)
    backends: dict[str, DeploymentOptions] = field(default_factory=dict)
    namespace: str = "vistrace"
    # builds the registry inside each replica (a picklable module-level callable; plugins included)
    registry_factory: Callable[[], Any] = default_registry_factory

    def options_for(self, backend: str) -> DeploymentOptions:
        return self.backends.get(backend, self.default)

    @classmethod
    def from_settings(cls, address: str | None = None) -> "RayConfig":
        """The ``[serve.ray]`` table of the settings file (see the module docstring); ``address`` overrides."""
        from vistrace.settings import nested_table

        raw = nested_table("serve", "ray")
        where = "[serve.ray] in the settings file"
        default = DeploymentOptions.from_table(dict(raw.get("default", {})), where=f"{where}.default")
        backends = {name: DeploymentOptions.from_table(dict(t), default, where=f"{where}.backends.{name}")
                    for name, t in dict(raw.get("backends", {})).items()}
        extra = sorted(set(raw) - {"address", "num_cpus", "default", "backends", "namespace"})
        if extra:
            raise InputError(f"{where}: unknown key(s) {', '.join(extra)}",
                             hint="known: address, num_cpus, namespace, [serve.ray.default], [serve.ray.backends.NAME]")
        cpus = raw.get("num_cpus")
        return cls(address=address or raw.get("address") or None, num_cpus=int(cpus) if cpus is not None else None,
                   default=default, backends=backends, namespace=str(raw.get("namespace", "vistrace")))


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc)),
            "hint": getattr(exc, "hint", None), "fix": getattr(exc, "fix", None)}


class BackendReplica:
    """One replica of one backend (a Ray Serve deployment class): builds the registry, answers ``run``."""

    def __init__(self, tool: str, backend: str, registry_factory: Callable[[], Any], batching: Any = None):
        reg = registry_factory()
        found = [b for b in reg.get(tool).backends if b.name == backend]
        if not found:
            raise InputError(f"ray replica: tool {tool!r} has no backend {backend!r} on this node",
                             hint="install the same vistrace extras and plugins on every node of the cluster")
        self.backend = found[0]
        if batching is not None and callable(getattr(self.backend, "run_batch", None)):
            from .batching import BatchingBackend

            self.backend = BatchingBackend(self.backend, batching)

    def _run(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            args = unpack(payload, what="args")
            value = self.backend.run(**args)
            return {"value": pack(value, inline=True)[0]}
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the front door by class and message
            if not isinstance(exc, VistraceError):
                log.exception("backend %s failed in a ray replica", self.backend.name)
            return {"error": _error_payload(exc)}

    async def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        # in a thread: concurrent requests reach the backend together (so BatchingBackend can group them)
        return await asyncio.to_thread(self._run, payload)

    def describe(self) -> dict[str, Any]:
        """The backend as the replica sees it (availability on that node)."""
        return self.backend.describe()


def _reraise(err: dict[str, Any], backend: str) -> None:
    from vistrace import errors as vt_errors

    cls = getattr(vt_errors, str(err.get("type", "")), None)
    message = str(err.get("message", ""))
    if isinstance(cls, type) and issubclass(cls, VistraceError) and cls is not VistraceError:
        if issubclass(cls, vt_errors.BackendUnavailable):
            raise cls(message, fix=err.get("fix") or err.get("hint"))
        raise cls(message, hint=err.get("hint"))
    raise RayBackendError(f"backend {backend} failed in its ray replica: {err.get('type')}: {message}")


class RayBackend(WrappedBackend):
    """The front door's stand-in for a backend deployed on Ray: same name, model and vocabulary."""

    def __init__(self, inner: Backend, handle: Any, timeout_s: float):
        super().__init__(inner)
        self.handle, self.timeout_s = handle, timeout_s
        sig = inspect.signature(inner.run)

        def run(**args: Any) -> Any:
            return self._call(args)

        # the tool passes optional arguments (ask's `context`) only to backends that name them
        run.__signature__ = sig  # type: ignore[attr-defined]
        self.run = run  # type: ignore[method-assign]

    def how(self) -> str:
        return f"on ray deployment {app_name(self.inner)}"

    def extra(self) -> dict[str, Any]:
        return {"ray": {"application": app_name(self.inner)}}

    def run(self, **args: Any) -> Any:  # replaced per instance in __init__ (keeps the inner signature)
        return self._call(args)

    def _call(self, args: dict[str, Any]) -> Any:
        payload, _ = pack(args, inline=True)
        try:
            out = self.handle.run.remote(payload).result(timeout_s=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - Ray's own failures (dead actor, timeout) named as ours
            raise RayBackendError(f"backend {self.name}: its ray deployment did not answer: {type(exc).__name__}: {exc}",
                                  hint="see `ray status` and the replica logs (ray dashboard / /tmp/ray/session_latest/logs)") from exc
        if "error" in out:
            _reraise(out["error"], self.name)
        return unpack(out["value"], what=f"the result of {self.name}")


def app_name(backend: Backend) -> str:
    """The Ray Serve application (and deployment) of one backend: ``vistrace-<tool>-<backend>``."""
    return f"{APP_PREFIX}{backend.tool}-{backend.name}"


def _remote_ok(backend: Backend) -> bool:
    return not accepts(backend, "ctx") and backend.availability().ok


class RayCluster:
    """Connects to (or starts) Ray, deploys backends, and tears down what it started."""

    def __init__(self, config: RayConfig):
        self.config = config
        self.started_ray = False
        self.apps: list[str] = []

    def demand(self, backends: list[Backend]) -> tuple[float, float]:
        """(CPUs, GPUs) the replicas of ``backends`` reserve together."""
        opts = [self.config.options_for(b.name) for b in backends]
        return sum(o.replicas * o.num_cpus for o in opts), sum(o.replicas * o.num_gpus for o in opts)

    def connect(self, cpus_needed: float = 0.0) -> None:
        """Join ``config.address``, or start a local instance with room for ``cpus_needed`` (its CPUs are
        scheduling slots: a local instance gets at least that many, so every replica can start)."""
        import os

        import ray
        from ray import serve

        if not ray.is_initialized():
            kw: dict[str, Any] = {"namespace": self.config.namespace, "include_dashboard": False,
                                  "log_to_driver": False}
            if self.config.address:
                ray.init(address=self.config.address, **kw)
            else:
                cpus = self.config.num_cpus or max(os.cpu_count() or 1, int(-(-cpus_needed // 1)))
                ray.init(num_cpus=cpus, **kw)
                self.started_ray = True
        # our FastAPI app is the HTTP front door: Ray's own HTTP proxy is not needed
        serve.start(proxy_location="Disabled")

    def check_capacity(self, backends: list[Backend]) -> None:
        """Refuse (InputError, with the fix) when the replicas cannot all be placed: serve.run would wait forever."""
        import ray

        cpus, gpus = self.demand(backends)
        have = ray.cluster_resources()
        short = [f"{need:g} {what} (the cluster has {have.get(what, 0):g})"
                 for what, need in (("CPU", cpus), ("GPU", gpus)) if need > have.get(what, 0) + 1e-9]
        if short:
            raise InputError(f"the Ray deployments of {len(backends)} backends ({', '.join(b.name for b in backends)}) "
                             f"need {' and '.join(short)}",
                             hint="serve fewer backends (--tools), lower [serve.ray.default] num_cpus / num_gpus or "
                                  "replicas in vistrace.toml, or add nodes to the cluster")

    def deploy(self, backend: Backend, batching: Any = None):
        from ray import serve

        opts = self.config.options_for(backend.name)
        actor: dict[str, Any] = {"num_cpus": opts.num_cpus}
        if opts.num_gpus:
            actor["num_gpus"] = opts.num_gpus
        name = app_name(backend)
        dep = serve.deployment(BackendReplica, name=name, num_replicas=opts.replicas, ray_actor_options=actor,
                               max_ongoing_requests=opts.max_ongoing_requests)
        handle = serve.run(dep.bind(backend.tool, backend.name, self.config.registry_factory, batching),
                           name=name, route_prefix=None, blocking=False)
        self.apps.append(name)
        log.info("deployed %s: %d replica(s), %g CPU, %g GPU each", name, opts.replicas, opts.num_cpus, opts.num_gpus)
        return handle

    def shutdown(self) -> None:
        """Stop what this server started: a local Ray instance goes entirely (its processes with it); on a
        joined cluster only our applications are deleted."""
        import ray
        from ray import serve

        if self.started_ray:  # deleting apps one by one is slow, and hangs when Ctrl-C already took the raylet
            ray.shutdown()
            self.started_ray = False
        elif ray.is_initialized():
            for name in self.apps:
                try:
                    serve.delete(name, _blocking=False)
                except Exception:  # noqa: BLE001 - best effort at exit
                    log.warning("could not delete ray application %s", name)
        self.apps = []


def ray_registry(registry, cluster: RayCluster, *, timeout_s: float = 120.0, batching: Any = None,
                 tools: list[str] | None = None):
    """A copy of ``registry`` whose available expert backends run as Ray Serve deployments of ``cluster``
    (connected here if it is not yet: a local instance sized for the replicas, or the configured address).

    ``tools`` limits the deployments to those tools' backends (what the server offers)."""
    allowed = set(tools) if tools else None
    chosen = {app_name(b): b for t in registry.tools() if t.expert and (allowed is None or t.name in allowed)
              for b in t.backends if _remote_ok(b)}
    cluster.connect(cluster.demand(list(chosen.values()))[0])
    cluster.check_capacity(list(chosen.values()))
    handles = {key: cluster.deploy(b, batching) for key, b in chosen.items()}

    def wrap(t):
        if not any(app_name(b) in handles for b in t.backends):
            return t
        own = copy.copy(t)
        own.backends = [RayBackend(b, handles[app_name(b)], timeout_s) if app_name(b) in handles else b
                        for b in t.backends]
        return own

    return registry.derived(wrap)
