"""TEST DOUBLE — a scripted OpenAI-compatible chat server on 127.0.0.1, for CLI/subprocess tests.

A subprocess (``vistrace chat``/``ask``) cannot be handed a Python test double, so it talks to this
server through the real OpenAICompatible client (``--llm openai:http://127.0.0.1:PORT/v1#scripted``).
Replies are answered in order; :data:`HOLD` as a reply makes the request wait until
``release()`` and then fail with 503 (the client is killed meanwhile, in the middle of a turn).
Every request body is recorded.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD = object()


class ScriptedServer:
    def __init__(self, replies: list):
        self.replies = list(replies)
        self.requests: list[dict] = []
        self.held = threading.Event()       # set when a request is being held
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def spec(self) -> str:
        return f"openai:http://127.0.0.1:{self._server.server_address[1]}/v1#scripted"

    def __enter__(self) -> "ScriptedServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def release(self) -> None:
        self._release.set()

    def add(self, *replies) -> None:
        with self._lock:
            self.replies.extend(replies)

    def _next(self, body: dict):
        with self._lock:
            self.requests.append(body)
            if not self.replies:
                return None
            return self.replies.pop(0)

    def _handler(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = outer._next(body)
                if reply is HOLD:
                    outer.held.set()
                    outer._release.wait(timeout=60)
                    self._send(503, json.dumps({"error": {"message": "held request released"}}).encode())
                    return
                if reply is None:
                    self._send(500, json.dumps({"error": {"message": "no scripted reply left"}}).encode())
                    return
                if body.get("stream"):
                    chunks = [reply[i:i + 8] for i in range(0, len(reply), 8)]
                    data = "".join("data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": c}}]}) + "\n\n"
                                   for c in chunks)
                    data += "data: " + json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                    data += "\n\ndata: [DONE]\n\n"
                    self._send(200, data.encode(), "text/event-stream")
                    return
                payload = {"id": "x", "object": "chat.completion", "model": "scripted",
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
                self._send(200, json.dumps(payload).encode())

        return Handler
