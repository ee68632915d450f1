"""Downloads against misbehaving servers on loopback: one that accepts and never answers, one
whose transfer stalls once, a port nobody listens on; and `check_url`'s HEAD requests against a
server that redirects."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

from testkit.http_stub import QuietHandler, StubHTTPServer

from ..oci.limits import NetworkLimits
from ..oci.types import GONE, MISMATCH, UNREACHABLE, Finding
from .download import DownloadError, check_url, download_verified, read_url

FAST = NetworkLimits(connect_s=2, read_s=1, attempts=2, total_s=30)
BODY = b"x" * 100


class Server:
    """A loopback TCP server that handles the n-th connection with `behaviours[n]` (the last
    one for every later connection): `silent` reads the request and says nothing, `stall`
    sends the headers and 10 bytes of BODY then nothing, `serve` sends it all."""

    def __init__(self, behaviours: List[str]) -> None:
        self.behaviours = behaviours
        self.connections = 0
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/file"
        self.open: List[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.open.append(connection)
            behaviour = self.behaviours[min(self.connections, len(self.behaviours) - 1)]
            self.connections += 1
            connection.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY)
            if behaviour == "stall":
                connection.sendall(head + BODY[:10])
            elif behaviour == "serve":
                connection.sendall(head + BODY)
                connection.close()

    def close(self) -> None:
        self.socket.close()
        for connection in self.open:
            connection.close()


@pytest.fixture
def server_of() -> Iterator:
    servers: List[Server] = []

    def start(*behaviours: str) -> Server:
        servers.append(Server(list(behaviours)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_server_that_accepts_and_never_answers_is_said_so_after_each_bounded_try(
    server_of, capsys: pytest.CaptureFixture
) -> None:
    server = server_of("silent")
    started = time.monotonic()
    with pytest.raises(DownloadError) as error:
        read_url(server.url, FAST)
    assert str(error.value).startswith(
        f"{server.url}: connected, but no answer within 1 s (gave up after 2 attempt(s) in"
    )
    assert time.monotonic() - started < 10
    assert server.connections == 2
    assert capsys.readouterr().err == (
        f"retrying {server.url} in 1 s (attempt 2 of 2): connected, but no answer within 1 s\n"
    )


def test_a_stalled_transfer_starts_again_and_completes(
    server_of, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    server = server_of("stall", "serve")
    target = tmp_path / "file"
    download_verified(server.url, target, hashlib.sha256(BODY).hexdigest(), len(BODY), FAST)
    assert target.read_bytes() == BODY
    assert capsys.readouterr().err == (
        f"retrying {server.url} in 1 s (attempt 2 of 2): connected, but no data for 1 s after"
        " 10 bytes\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


def test_the_total_bounds_the_retries_and_says_so(server_of, capsys: pytest.CaptureFixture) -> None:
    server = server_of("silent")
    bounded = NetworkLimits(connect_s=2, read_s=0.5, attempts=10, total_s=2)
    started = time.monotonic()
    with pytest.raises(DownloadError) as error:
        read_url(server.url, bounded)
    # Tries at 0 s and 1.5 s (after a 1 s wait); a third would start at 4 s.
    assert time.monotonic() - started < 3
    assert re.fullmatch(
        re.escape(f"{server.url}: connected, but no answer within 0.5 s (gave up after 2")
        + r" attempt\(s\) in \d+ s: another would start past the total limit of 2 s\)",
        str(error.value),
    ), str(error.value)
    assert server.connections == 2
    assert capsys.readouterr().err == (
        f"retrying {server.url} in 1 s (attempt 2 of 10): connected, but no answer within 0.5 s\n"
    )


def test_nobody_listening_is_cannot_connect(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match=r"cannot connect: .*refused"):
        read_url(f"http://127.0.0.1:{port}/file", FAST)


class _Redirecting(QuietHandler):
    """`/old` redirects to `/new`, which is BODY; anything else is 404. Records each request."""

    requests: List[str] = []

    def _answer(self, with_body: bool) -> None:
        self.requests.append(f"{self.command} {self.path}")
        if self.path == "/old":
            self.send_response(302)
            self.send_header("Location", "/new")
            self.send_header("Content-Length", "0")
        elif self.path == "/new":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
        self.end_headers()
        if with_body and self.path == "/new":
            self.wfile.write(BODY)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def do_GET(self) -> None:
        self._answer(with_body=True)


@pytest.fixture
def redirecting() -> Iterator[str]:
    """The URL of a `_Redirecting` server on loopback, whose requests start empty."""
    _Redirecting.requests = []
    with StubHTTPServer(_Redirecting) as server:
        yield server.url


def test_check_url_asks_with_head_through_redirects(redirecting: str) -> None:
    assert check_url(f"{redirecting}/old", "file", len(BODY), FAST) is None
    assert check_url(f"{redirecting}/old", "file", None, FAST) is None
    assert _Redirecting.requests == ["HEAD /old", "HEAD /new"] * 2


def test_check_url_says_gone_other_size_or_unreachable(redirecting: str) -> None:
    assert check_url(f"{redirecting}/new", "file", len(BODY) + 1, FAST) == Finding(
        "file",
        MISMATCH,
        f"{redirecting}/new: the server states {len(BODY)} bytes, pinned: {len(BODY) + 1}",
    )
    assert check_url(f"{redirecting}/gone", "file", 1, FAST) == Finding(
        "file", GONE, f"{redirecting}/gone: HTTP 404 Not Found"
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}/file"
    finding = check_url(nobody, "file", 1, FAST)
    assert finding is not None and finding.status == UNREACHABLE
    assert finding.detail.startswith(f"{nobody}: cannot connect: ")
    assert "(gave up after 2 attempt(s) in " in finding.detail
