"""The expert server (``vistrace serve``) and its client (``RemoteTools``): the tools over HTTP.

Importing this package is light; FastAPI, uvicorn and httpx load when a server or client is made.
"""

from __future__ import annotations

from .client import RemoteTools, remote_registry

__all__ = ["RemoteTools", "remote_registry"]
