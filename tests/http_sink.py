"""A real HTTP server on loopback that records requests, for webhook tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpSink:
    """Answers with the queued status codes (then 200) after the queued delays
    (seconds, then none) and records every request."""

    server: ThreadingHTTPServer
    requests: list[Recorded] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delays: list[float] = field(default_factory=list)
    seen_keys: set[str] = field(default_factory=set)
    effects: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        assert isinstance(host, str)
        return f"http://{host}:{port}"

    def stop(self) -> None:
        # Delayed answers end now: nobody waits for them any more.
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def start_sink() -> HttpSink:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        # Without this, small writes wait for delayed ACKs (~40 ms a request).
        disable_nagle_algorithm = True
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                sink.requests.append(
                    Recorded(self.command, self.path, dict(self.headers), body)
                )
                status = sink.statuses.pop(0) if sink.statuses else 200
                delay = sink.delays.pop(0) if sink.delays else 0.0
                key = self.headers.get("Idempotency-Key")
                # Like a receiver that de-duplicates: the effect happens once per key
                # (when the request arrives, however slowly it is answered).
                if status < 300 and key and key not in sink.seen_keys:
                    sink.seen_keys.add(key)
                    sink.effects += 1
            if delay:
                sink.stopping.wait(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                # A slow answer's client may be gone (killed) by now.
                self.close_connection = True

        do_POST = do_PUT = do_PATCH = do_GET = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = HttpSink(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return sink
