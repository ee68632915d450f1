"""Unit tests: the plain-HTTP policy, and the HTTP behaviour (auth, redirects, retries,
keep-alive, timeouts) against small loopback servers. The real registry is exercised by
tests/oci/test_registry.py."""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import List

import pytest

from .auth import AnonymousKeychain, Credentials, StaticKeychain
from .conftest import FAST_LIMITS, MANIFEST, Answer, Request, StubServer, manifest_answer
from .errors import PlainHTTPRefused, RegistryUnavailable
from .limits import NetworkLimits
from .name import Reference, Repository
from .remote import RegistryClient
from .transport import is_loopback
from .types import OCI_LAYER_TAR, Descriptor, sha256_digest


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1:5000", True),
        ("127.3.2.1", True),
        ("localhost:80", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("r.example", False),
        ("localhost.r.example", False),
    ],
)
def test_recognises_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_only_loopback_and_insecure_registries_get_plain_http() -> None:
    client = RegistryClient(AnonymousKeychain(), insecure_registries=["lab.example:5000"])
    assert client._base_url(Repository("127.0.0.1:5000", "a")) == "http://127.0.0.1:5000"
    assert client._base_url(Repository("lab.example:5000", "a")) == "http://lab.example:5000"
    assert client._base_url(Repository("lab.example", "a")) == "https://lab.example"
    assert client._base_url(Repository.parse("busybox")) == "https://registry-1.docker.io"


# Connections and retries ------------------------------------------------------------------------


def test_reuses_keep_alive_connections(client: RegistryClient) -> None:
    with StubServer(lambda request: manifest_answer(MANIFEST)) as server:
        for _ in range(3):
            client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
    assert server.connections == 1


def test_never_sends_into_a_connection_the_server_closed() -> None:
    with RegistryClient(AnonymousKeychain(), limits=NetworkLimits(attempts=1)) as client:
        with StubServer(lambda r: manifest_answer(MANIFEST), close_after_each=True) as server:
            reference = Reference.parse(f"{server.address}/app:v1")
            client.get_manifest(reference)
            assert server.connection_closed.wait(5)
            client.get_manifest(reference)  # one attempt only: a dead socket would fail it
    assert server.connections == 2


def test_retries_5xx_then_succeeds(client: RegistryClient) -> None:
    def answer(request: Request) -> Answer:
        return (503, {}, b"busy") if len(server.requests) < 3 else manifest_answer(MANIFEST)

    with StubServer(answer) as server:
        manifest = client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
    assert manifest.data == MANIFEST and len(server.requests) == 3


def test_gives_up_after_the_configured_attempts(client: RegistryClient) -> None:
    with StubServer(lambda request: (502, {}, b"")) as server:
        with pytest.raises(RegistryUnavailable, match=r"gave up after 3 attempt\(s\).*HTTP 502"):
            client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
    assert len(server.requests) == 3


# Auth and redirects -----------------------------------------------------------------------------


def test_anonymous_bearer_token_is_fetched_once_per_scope(client: RegistryClient) -> None:
    with StubServer(lambda request: (200, {}, b'{"token": "tok-1"}')) as token_server:
        realm = f"http://{token_server.address}/token"

        def registry_answer(request: Request) -> Answer:
            if request.headers.get("Authorization") == "Bearer tok-1":
                return manifest_answer(MANIFEST)
            challenge = f'Bearer realm="{realm}",service="stub",scope="repository:team/app:pull"'
            return 401, {"WWW-Authenticate": challenge}, b""

        with StubServer(registry_answer) as registry:
            for _ in range(2):
                client.get_manifest(Reference.parse(f"{registry.address}/team/app:v1"))
    [token_request] = token_server.requests
    assert "Authorization" not in token_request.headers
    assert token_request.query == {"service": ["stub"], "scope": ["repository:team/app:pull"]}
    assert len(registry.requests) == 3  # one 401, then two authorized


def test_credentials_stay_on_the_registry_when_a_blob_redirects(tmp_path: Path) -> None:
    content = b"layer bytes"
    descriptor = Descriptor(OCI_LAYER_TAR, sha256_digest(content), len(content))
    credentials = Credentials("alice", "secret")
    with StubServer(lambda request: (200, {}, content)) as storage:

        def registry_answer(request: Request) -> Answer:
            if request.headers.get("Authorization") != credentials.basic_authorization():
                return 401, {"WWW-Authenticate": 'Basic realm="stub"'}, b""
            location = f"http://{storage.address}/bucket/blob?signature=abc"
            return 307, {"Location": location}, b""

        with StubServer(registry_answer) as registry:
            keychain = StaticKeychain({registry.address: credentials})
            with RegistryClient(keychain, limits=FAST_LIMITS, first_retry_delay_s=0.001) as client:
                repository = Repository(registry.address, "app")
                client.fetch_blob(repository, descriptor, tmp_path / "blob")
    assert (tmp_path / "blob").read_bytes() == content
    assert [r.headers.get("Authorization") for r in registry.requests] == [
        None,
        credentials.basic_authorization(),
    ]
    [storage_request] = storage.requests
    assert storage_request.path == "/bucket/blob?signature=abc"
    assert "Authorization" not in storage_request.headers


def test_refuses_to_follow_a_redirect_to_plain_http_elsewhere(client: RegistryClient) -> None:
    location = {"Location": "http://storage.example/blob"}
    with StubServer(lambda request: (307, location, b"")) as server:
        descriptor = Descriptor(OCI_LAYER_TAR, sha256_digest(b""), 0)
        with pytest.raises(PlainHTTPRefused, match="storage.example"):
            client.read_blob(Repository(server.address, "app"), descriptor)


class _SilentServer:
    """Accepts connections on loopback, reads the request and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.accepted: List[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.accepted:
            connection.close()


def test_a_registry_that_accepts_and_never_answers_is_said_so_and_bounded() -> None:
    server = _SilentServer()
    url = f"http://{server.address}/v2/app/manifests/v1"
    try:
        limits = NetworkLimits(read_s=1, attempts=2)
        with RegistryClient(AnonymousKeychain(), limits=limits, first_retry_delay_s=0.01) as client:
            started = time.monotonic()
            with pytest.raises(RegistryUnavailable) as error:
                client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
            assert time.monotonic() - started < 10
        assert re.search(
            r"failed \(gave up after 2 attempt\(s\) in \d+ s\); last error: "
            + re.escape(f"{url}: connected, but nothing arrived within 1 s")
            + "$",
            str(error.value),
        ), str(error.value)
        assert len(server.accepted) == 2
        # The total bounds the attempts, whatever their number.
        bounded = NetworkLimits(read_s=1, attempts=10, total_s=1.5)
        with RegistryClient(
            AnonymousKeychain(), limits=bounded, first_retry_delay_s=0.01
        ) as client:
            with pytest.raises(RegistryUnavailable) as error:
                client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
        assert re.search(
            r"failed \(gave up after 2 attempt\(s\) in \d+ s: another would start past the"
            r" total limit of 1.5 s\); last error: .*: connected, but nothing arrived within 1 s$",
            str(error.value),
        ), str(error.value)
        assert len(server.accepted) == 4
    finally:
        server.close()
