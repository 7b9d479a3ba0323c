"""A real ``vistrace serve`` (uvicorn) on a random loopback port, started and stopped per test module."""

from __future__ import annotations

import socket
import threading
import time

import pytest

TOKEN = "test-token-123"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, app):
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def live(app):
    return LiveServer(app)


@pytest.fixture(scope="module")
def server():
    """The default registry served with a token and no result cache (every call really runs)."""
    from vistrace.serve.app import create_app

    with live(create_app(token=TOKEN, cache=False)) as s:
        yield s
