"""A real HTTP receiver for webhook tests: a threaded ``http.server`` on 127.0.0.1 (no mock transport).

Every POST is recorded (path, headers, body, arrival time); the answer is decided per request by a *plan*:
a queue of :class:`Reply` per path (consumed in order, then the default), or a function of the request.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """How to answer one request: status, headers, body, and how long to wait before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.body)
        return result

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


Decider = Callable[[Received], Reply | None]


class Receiver:
    """The receiver; use as a context manager (or ``start``/``stop``)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._plans: dict[str, deque[Reply]] = defaultdict(deque)
        self._deciders: dict[str, Decider] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    # The sender went away mid-request (a worker killed while sending): as with any HTTP
                    # server, a request cut short is no request, and nothing is recorded.
                    self.close_connection = True
                    return
                request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
                reply = receiver._reply(request)
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up waiting (a timeout test)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _reply(self, request: Received) -> Reply:
        with self._lock:
            self.received.append(request)
            decider = self._deciders.get(request.path)
            if decider is not None:
                decided = decider(request)
                if decided is not None:
                    return decided
            plan = self._plans.get(request.path)
            return plan.popleft() if plan else Reply()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, *replies: Reply) -> None:
        """Answer the next requests to ``path`` with ``replies``, in order (then 200)."""
        with self._lock:
            self._plans[path].extend(replies)

    def decide(self, path: str, decider: Decider) -> None:
        """Answer requests to ``path`` with ``decider(request)`` (None: fall back to the plan)."""
        with self._lock:
            self._deciders[path] = decider

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
