"""An OpenAI-compatible chat completions endpoint standing in for a model server (not
engram's bus or database) in the memory tests: a subclass says what to answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeCompletions(BaseHTTPRequestHandler):
    """``POST .../chat/completions``: answers ``answer(request body)`` as the assistant's
    message; an HTTP 500 when it is None."""

    def answer(self, body: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def do_POST(self) -> None:
        content = self.answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        if content is None:
            self.send_response(500)
            self.end_headers()
            return
        reply = {"choices": [{"message": {"role": "assistant", "content": content}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return None


@contextmanager
def serving(handler: type[FakeCompletions]) -> Iterator[str]:
    """The endpoint on a free local port, on a thread of its own; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
