"""Unit tests: reference parsing and policies, plus the HTTP behaviour (auth, redirects, retries,
keep-alive, verification) against small loopback servers. The real registry is exercised by
tests/oci/test_registry.py."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Tuple
from urllib.parse import parse_qs, urlsplit

import pytest

from testkit.http_stub import QuietHandler, StubHTTPServer

from .auth import AnonymousKeychain, Credentials, StaticKeychain
from .connection import NetworkLimits
from .registry import (
    DigestMismatch,
    InvalidManifest,
    InvalidReference,
    Manifest,
    PlainHTTPRefused,
    PushStats,
    Reference,
    RegistryClient,
    RegistryUnavailable,
    Repository,
    is_loopback,
)
from .types import OCI_CONFIG, OCI_INDEX, OCI_LAYER_TAR, OCI_MANIFEST, Descriptor, sha256_digest

DIGEST = "sha256:" + "ab" * 32
FAST_LIMITS = NetworkLimits(attempts=3)


# References -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, registry, name, tag, digest",
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("docker.io/busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("index.docker.io/team/app", "docker.io", "team/app", "latest", None),
        ("team/app:v1", "docker.io", "team/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b/c:tag", "localhost:5000", "a/b/c", "tag", None),
        (f"127.0.0.1:5000/app@{DIGEST}", "127.0.0.1:5000", "app", None, DIGEST),
        (f"r.example/app:v2@{DIGEST}", "r.example", "app", "v2", DIGEST),
        ("[::1]:5000/app:v3", "[::1]:5000", "app", "v3", None),
        ("Registry.Example/app", "Registry.Example", "app", "latest", None),
        ("r.example/my-app/x__y.z:1_0-rc.1", "r.example", "my-app/x__y.z", "1_0-rc.1", None),
    ],
)
def test_parses_references(text: str, registry: str, name: str, tag: str, digest: str) -> None:
    reference = Reference.parse(text)
    assert reference.repository == Repository(registry, name)
    assert (reference.tag, reference.digest) == (tag, digest)
    assert Reference.parse(str(reference)) == reference


@pytest.mark.parametrize(
    "text",
    [
        "UPPER",
        "UPPER/case",
        "UPPER/Case",
        "r.example/App",
        "r.example//app",
        "r.example/app-",
        "r.example/app:-tag",
        "r.example/app:v1\n",
        "r.example/app:v\u00e9",
        "r.example/app:" + "t" * 129,
        "r.example/app@sha256:abc",
        f"r.example/app@sha512:{'ab' * 64}",
        "bad_host:5000/app",
        "r.example/" + "a" * 250,
    ],
)
def test_refuses_invalid_references(text: str) -> None:
    with pytest.raises(InvalidReference):
        Reference.parse(text)


def test_docker_hub_references_compare_equal_however_written() -> None:
    # What matches an `oci_base` image to the CUDA table's entry.
    table = Reference.parse("nvidia/cuda:12.4.1-base-ubuntu22.04")
    for written in ("docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
                    "index.docker.io/nvidia/cuda:12.4.1-base-ubuntu22.04"):  # fmt: skip
        assert Reference.parse(written) == table
    assert Reference.parse("docker.io/library/python:3.11") == Reference.parse("python:3.11")
    assert Reference.parse("r.example/nvidia/cuda:12.4.1-base-ubuntu22.04") != table


def test_a_capitalised_first_component_is_named_in_the_error() -> None:
    with pytest.raises(InvalidReference, match="^'UPPER/Case': `UPPER` has capital letters"):
        Repository.parse("UPPER/Case")


def test_a_digest_pins_the_manifest_even_with_a_tag() -> None:
    assert Reference.parse(f"r.example/app:v1@{DIGEST}").identifier == DIGEST
    assert Reference.parse("r.example/app").identifier == "latest"


def test_docker_hub_is_served_by_its_api_host() -> None:
    assert Repository.parse("busybox").api_host == "registry-1.docker.io"
    assert Repository.parse("r.example:443/app").api_host == "r.example:443"


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


# Small nouns ------------------------------------------------------------------------------------


def test_push_stats_summary() -> None:
    stats = PushStats(uploaded_blobs=1, uploaded_bytes=3 * 1024 * 1024, present_blobs=2)
    stats.present_bytes, stats.mounted_blobs, stats.mounted_bytes = 100, 1, 1024
    assert stats.skipped_bytes == 1124
    assert str(stats) == (
        "uploaded 1 blobs (3.0 MiB), skipped 3 (1.1 KiB: 1 mounted, 2 already present),"
        " put 0 manifests, 0 retries"
    )


def _manifest(media_type: str, document: object) -> Manifest:
    descriptor, data = Descriptor.of_json_document(media_type, document)
    return Manifest(descriptor, data)


def test_manifest_lists_what_it_references() -> None:
    config = Descriptor(OCI_CONFIG, DIGEST, 2)
    layer = Descriptor(OCI_LAYER_TAR, "sha256:" + "cd" * 32, 3)
    image = _manifest(
        OCI_MANIFEST, {"schemaVersion": 2, "config": config.to_json(), "layers": [layer.to_json()]}
    )
    assert (image.is_index, image.config, image.layers) == (False, config, (layer,))
    index = _manifest(OCI_INDEX, {"schemaVersion": 2, "manifests": [image.descriptor.to_json()]})
    assert (index.is_index, index.manifests) == (True, (image.descriptor,))
    with pytest.raises(InvalidManifest, match="is an index and has no 'layers'"):
        _ = index.layers
    with pytest.raises(InvalidManifest, match="missing or malformed 'config'"):
        _ = _manifest(OCI_MANIFEST, {"layers": []}).config


# Loopback HTTP servers --------------------------------------------------------------------------


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


def _manifest_answer(data: bytes) -> Answer:
    return 200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": sha256_digest(data)}, data


MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST}).encode()


# Connections and retries ------------------------------------------------------------------------


def test_reuses_keep_alive_connections(client: RegistryClient) -> None:
    with StubServer(lambda request: _manifest_answer(MANIFEST)) as server:
        for _ in range(3):
            client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
    assert server.connections == 1


def test_never_sends_into_a_connection_the_server_closed() -> None:
    with RegistryClient(AnonymousKeychain(), limits=NetworkLimits(attempts=1)) as client:
        with StubServer(lambda r: _manifest_answer(MANIFEST), close_after_each=True) as server:
            reference = Reference.parse(f"{server.address}/app:v1")
            client.get_manifest(reference)
            assert server.connection_closed.wait(5)
            client.get_manifest(reference)  # one attempt only: a dead socket would fail it
    assert server.connections == 2


def test_retries_5xx_then_succeeds(client: RegistryClient) -> None:
    def answer(request: Request) -> Answer:
        return (503, {}, b"busy") if len(server.requests) < 3 else _manifest_answer(MANIFEST)

    with StubServer(answer) as server:
        manifest = client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
    assert manifest.data == MANIFEST and len(server.requests) == 3


def test_gives_up_after_the_configured_attempts(client: RegistryClient) -> None:
    with StubServer(lambda request: (502, {}, b"")) as server:
        with pytest.raises(RegistryUnavailable, match=r"gave up after 3 attempt\(s\).*HTTP 502"):
            client.get_manifest(Reference.parse(f"{server.address}/app:v1"))
    assert len(server.requests) == 3


# Verification -----------------------------------------------------------------------------------


def test_manifest_by_digest_must_match(client: RegistryClient) -> None:
    wanted = sha256_digest(b"the real one")
    with StubServer(lambda request: _manifest_answer(MANIFEST)) as server:
        with pytest.raises(DigestMismatch) as error:
            client.get_manifest(Reference.parse(f"{server.address}/team/app@{wanted}"))
    message = str(error.value)
    assert server.address in message and "team/app" in message and wanted in message


def test_manifest_by_tag_must_match_the_digest_the_registry_states(client: RegistryClient) -> None:
    stated = sha256_digest(b"something else")
    answer = (200, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": stated}, MANIFEST)
    with StubServer(lambda request: answer) as server:
        with pytest.raises(DigestMismatch, match=stated):
            client.get_manifest(Reference.parse(f"{server.address}/app:v1"))


@pytest.mark.parametrize("served", [b"tampered!", b"content plus more"], ids=["wrong", "longer"])
def test_blob_download_leaves_nothing_when_content_does_not_match(
    client: RegistryClient, tmp_path: Path, served: bytes
) -> None:
    content = b"content"
    descriptor = Descriptor(OCI_LAYER_TAR, sha256_digest(content), len(content))
    with StubServer(lambda request: (200, {}, served)) as server:
        repository = Repository(server.address, "app")
        with pytest.raises(DigestMismatch, match=descriptor.digest):
            client.fetch_blob(repository, descriptor, tmp_path / "blob")
        with pytest.raises(DigestMismatch):
            client.read_blob(repository, descriptor)
    assert list(tmp_path.iterdir()) == []


# Auth and redirects -----------------------------------------------------------------------------


def test_anonymous_bearer_token_is_fetched_once_per_scope(client: RegistryClient) -> None:
    with StubServer(lambda request: (200, {}, b'{"token": "tok-1"}')) as token_server:
        realm = f"http://{token_server.address}/token"

        def registry_answer(request: Request) -> Answer:
            if request.headers.get("Authorization") == "Bearer tok-1":
                return _manifest_answer(MANIFEST)
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


def test_streamed_download_hashes_what_it_writes(client: RegistryClient, tmp_path: Path) -> None:
    content = bytes(range(256)) * 8192  # 2 MiB: several read buffers
    descriptor = Descriptor(OCI_LAYER_TAR, sha256_digest(content), len(content))
    with StubServer(lambda request: (200, {}, content)) as server:
        client.fetch_blob(Repository(server.address, "app"), descriptor, tmp_path / "blob")
    assert hashlib.sha256((tmp_path / "blob").read_bytes()).hexdigest() == descriptor.digest[7:]
    assert [p.name for p in tmp_path.iterdir()] == ["blob"]


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
