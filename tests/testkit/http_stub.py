"""A stub HTTP server on loopback for tests that play a mirror, a registry, a proxy or a token
service: the test supplies the request handler, this module the threaded server's lifecycle; and
a forwarder to a real registry that a test makes misbehave (`RegistryProxy`)."""

from __future__ import annotations

import ssl
import threading
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, List, Optional, Tuple, Type, TypeVar, Union

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


# Headers of one hop: the forwarder answers with its own.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}
# What `RegistryProxy.intercept` returns to close the connection without an answer.
DROP = "drop"
Answer = Tuple[int, List[Tuple[str, str]], bytes]


class RegistryProxy(StubHTTPServer):
    """An HTTP/1.1 forwarder to a real registry on loopback, recording `(method, path)` of every
    request. The Host header is kept, so the upload URLs the registry hands out point back at the
    proxy. A subclass plays another server: `intercept` answers a request itself (or `DROP`s it)
    instead of forwarding it, `added_headers` adds to a forwarded answer."""

    def __init__(self, upstream: str) -> None:
        self.requests: List[Tuple[str, str]] = []
        proxy = self
        lock = threading.Lock()

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def handle_one_request(self) -> None:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    proxy.requests.append((self.command, self.path))
                    own = proxy.intercept(len(proxy.requests), self.command, self.path)
                if own == DROP:
                    self.close_connection = True
                elif own is not None:
                    self._answer(*own)
                else:
                    self._forward(body, proxy.added_headers(self.command, self.path, body))

            def _forward(self, body: bytes, extra: List[Tuple[str, str]]) -> None:
                connection = HTTPConnection(upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                headers["Content-Length"] = str(len(body))
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                connection.close()
                passed = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
                self._answer(response.status, passed + extra, answer)

            def _answer(self, status: int, headers: List[Tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers + [("Content-Length", str(len(body)))]:
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        super().__init__(Handler)

    def intercept(self, number: int, method: str, path: str) -> Union[None, str, Answer]:
        """The answer to request `number` (1-based) if the proxy gives it, else None."""
        return None

    def added_headers(self, method: str, path: str, body: bytes) -> List[Tuple[str, str]]:
        return []
