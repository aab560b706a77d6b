"""A real HTTP server speaking the OpenAI chat-completions wire format, with scripted replies and failures."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness.core.models import Endpoint, Model


class ScriptedServer:
    """A real HTTP server speaking the chat-completions wire format, failing on purpose.

    `script` is a list of (status, headers) answered in turn, where None answers
    normally; after it runs out every request succeeds, with `responder(body)` as
    the reply text when given, else a reply that names the request number.
    `statuses` holds the HTTP status of every request, in the order of `requests`.
    """

    def __init__(
        self, script: list[tuple[int, dict[str, str]] | None] = (), responder: Callable[[dict], str] | None = None
    ):
        self.script = list(script)
        self.responder = responder
        self.requests: list[tuple[float, dict]] = []
        self.statuses: list[int] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self.delay = 0.0
        # A gate: hold each request until `hold_until` are in flight together (then release them all),
        # or until `hold_timeout` seconds pass; so a client that sends concurrently is seen to, however
        # slowly the machine runs it, and one that sends one request at a time is seen not to.
        self.hold_until = 0
        self.hold_timeout = 2.0
        self._released = threading.Condition(self._lock)
        self._wave = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer._lock:
                    outer.requests.append((time.monotonic(), body))
                    number = len(outer.requests)
                    step = outer.script.pop(0) if outer.script else None
                    outer.statuses.append(step[0] if step is not None else 200)
                    outer._in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer._in_flight)
                    if outer.hold_until:
                        wave = outer._wave
                        if outer._in_flight >= outer.hold_until:
                            outer._wave += 1
                            outer._released.notify_all()
                        else:
                            outer._released.wait_for(lambda: outer._wave != wave, timeout=outer.hold_timeout)
                try:
                    time.sleep(outer.delay)
                    if step is not None:
                        status, headers = step
                        self.send_response(status)
                        for name, value in headers.items():
                            self.send_header(name, value)
                        payload = json.dumps({"error": {"message": "scripted failure"}}).encode()
                        self.send_header("Content-Type", "application/json")
                        self.send_header("Content-Length", str(len(payload)))
                        self.end_headers()
                        self.wfile.write(payload)
                        return
                    reply = outer.reply_for(body, number)
                    words = len(reply.split())  # the "tokens" this server reports generating
                    payload = json.dumps(
                        {
                            "id": f"c{number}",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": reply},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {"prompt_tokens": 1, "completion_tokens": words, "total_tokens": words + 1},
                        }
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                finally:
                    with outer._lock:
                        outer._in_flight -= 1

            def do_GET(self) -> None:  # /v1/models, as vLLM answers it
                payload = json.dumps({"data": [{"id": "scripted", "root": "scripted"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # many requests in flight at once, as the harness sends them

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def reply_for(self, body: dict, number: int) -> str:
        return self.responder(body) if self.responder else f"reply {number}"

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(base_url=f"http://127.0.0.1:{self.httpd.server_port}/v1", api_key="k", model="scripted")

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *args: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def connected_model(
    role: str,
    identity: str,
    endpoints: tuple[Endpoint, ...],
    *,
    max_concurrency: int | None = None,
    seeded: bool = True,
) -> Model:
    """A Model already connected to ``endpoints``, as harness.core.connect would yield it."""
    return Model(
        name=f"{role}-under-test", role=role, kind="url", source=tuple(e.base_url for e in endpoints),
        reference=identity, max_concurrency=max_concurrency, identity=identity, endpoints=endpoints, seeded=seeded,
    )  # fmt: skip
