"""A stub HTTP server on loopback for tests that play a mirror, a registry, a proxy or a token
service: the test supplies the request handler, this module the threaded server's lifecycle."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Type, TypeVar

_Self = TypeVar("_Self", bound="StubHTTPServer")


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (the base class writes each request to stderr)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class StubHTTPServer:
    """A `ThreadingHTTPServer` on an ephemeral 127.0.0.1 port (bound on construction, so `port`
    is known at once) that serves, one thread per connection, while the `with` block runs; the
    block's exit stops it and closes its socket.

    `handler` is what `http.server` takes: a handler class, or a callable making one per request
    (`functools.partial` of a class). `tls` serves HTTPS with that server context. `server_class`
    lets a test hook into the server (e.g. `shutdown_request`, to see connections close).
    """

    def __init__(
        self,
        handler: Callable[..., BaseHTTPRequestHandler],
        *,
        tls: Optional[ssl.SSLContext] = None,
        server_class: Type[ThreadingHTTPServer] = ThreadingHTTPServer,
    ) -> None:
        self.server = server_class(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port: int = self.server.server_address[1]
        self._thread: Optional[threading.Thread] = None

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`, as a registry reference or a proxy target names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`, without a trailing slash."""
        return f"http://{self.address}"

    def __enter__(self: _Self) -> _Self:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join()
