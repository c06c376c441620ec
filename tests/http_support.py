"""A real HTTP server on 127.0.0.1 for tests: its state, response helpers, and its lifetime."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import BaseRequestHandler
from typing import Any

import pytest

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy")


@dataclass
class ServerState:
    """A running local server's port, the paths it was asked for, and a latch for slow routes."""

    port: int = 0
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """Return the absolute URL of `path` on this server under `host`."""
        return f"http://{host}:{self.port}{path}"


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that logs nothing and closes each connection after one response."""

    protocol_version = "HTTP/1.1"  # needed for a chunked response

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""

    def send_body(
        self, body: bytes, announced: int | None = None, content_type: str | None = None
    ) -> None:
        """200 with `body`, announcing `announced` bytes if given (a lie, for some tests)."""
        self.send_response(200)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if announced is None else announced))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def send_chunked(self, body: bytes, step: int) -> None:
        """200 with `body` in chunks of `step` bytes and no length."""
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for start in range(0, len(body), step):
            piece = body[start : start + step]
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def redirect(self, location: str) -> None:
        """302 to `location`."""
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True


@contextlib.contextmanager
def serving(
    handler: Callable[[Any, Any, ThreadingHTTPServer], BaseRequestHandler], state: ServerState
) -> Iterator[ServerState]:
    """Run a ThreadingHTTPServer on 127.0.0.1 (a free port, set in `state`) for the block."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        state.release.set()  # let parked slow handlers finish
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def clear_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make requests to 127.0.0.1 go straight to the test server, not a proxy."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
