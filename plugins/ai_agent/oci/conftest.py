"""Fixtures of the registry client's unit tests: small loopback HTTP servers standing in for
registries, and a client that retries fast."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from typing import Callable, Dict, Iterator, List, Mapping, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

from testkit.http_stub import QuietHandler, StubHTTPServer

from .auth import AnonymousKeychain
from .limits import NetworkLimits
from .remote import RegistryClient
from .types import OCI_MANIFEST, sha256_digest

FAST_LIMITS = NetworkLimits(attempts=3)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    @property
    def query(self) -> Dict[str, List[str]]:
        return parse_qs(urlsplit(self.path).query)


Answer = Tuple[int, Dict[str, str], bytes]


class StubServer(StubHTTPServer):
    """An HTTP/1.1 keep-alive server on 127.0.0.1 answering every request with `answer`; it
    records requests and counts connections. With `close_after_each`, it closes each connection
    after one answer without announcing it (as an idle timeout would)."""

    def __init__(self, answer: Callable[[Request], Answer], close_after_each: bool = False):
        self.requests: List[Request] = []
        self.connections = 0
        self.connection_closed = threading.Event()
        stub = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                stub.connections += 1

            def handle_one_request(self) -> None:
                self.raw_requestline = self.rfile.readline(65537)
                if not self.raw_requestline or not self.parse_request():
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    self.command, self.path, dict(self.headers), self.rfile.read(length)
                )
                stub.requests.append(request)
                status, headers, body = answer(request)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = close_after_each

        class Server(ThreadingHTTPServer):
            def shutdown_request(self, request: object) -> None:
                super().shutdown_request(request)  # type: ignore[arg-type]
                stub.connection_closed.set()

        super().__init__(Handler, server_class=Server)


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(
        AnonymousKeychain(), limits=FAST_LIMITS, first_retry_delay_s=0.001
    ) as client:
        yield client


def manifest_answer(data: bytes) -> Answer:
    return 200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256_digest(data)}, data


MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()
