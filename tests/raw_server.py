"""A real HTTP server that answers every request with exactly the bytes a test gives it.

For what a well-behaved server never sends: a JSON list, a body with no choices, HTML,
bytes that are not UTF-8. ``answer(method, path, number)`` returns (status, body) for the
number-th request (from 1); the content type is always application/json, as a proxy that
breaks would still claim.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness.core.models import Endpoint


class RawServer:
    def __init__(self, answer: Callable[[str, str, int], tuple[int, bytes]]):
        self.requests: list[tuple[str, str]] = []
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    outer.requests.append((self.command, self.path))
                    number = len(outer.requests)
                status, body = answer(self.command, self.path, number)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/v1"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(base_url=self.base_url, api_key="k", model="raw")

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(content: object = "hello", finish_reason: object = "stop") -> bytes:
    """A well-formed chat-completion body."""
    import json

    message = {"role": "assistant", "content": content}
    return json.dumps({"id": "c", "object": "chat.completion", "created": 0, "model": "raw",
                       "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}).encode()  # fmt: skip
