"""The registry client against the real Debian `docker-registry` (distribution 2.8) and dockerd.

Images are built here from scratch (a tar made with `tarfile`, an OCI config, a manifest), so
these tests depend on nothing but the client. Faults, credentials and token auth come from real
components too: a forwarding proxy that fails chosen requests, an htpasswd registry, and a token
registry trusting a certificate made with the openssl CLI.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import ssl
import stat
import subprocess
import tarfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qs, urlsplit

import pytest

from ai_agent.oci.auth import AnonymousKeychain, Credentials, StaticKeychain
from ai_agent.oci.base import check_lock, lock_base
from ai_agent.oci.errors import (
    AuthenticationError,
    BlobSourceMismatch,
    DigestMismatch,
    MissingBlob,
    NotFoundError,
    PlatformNotFound,
    RegistryUnavailable,
    TLSVerificationError,
)
from ai_agent.oci.layer import Entry, write_layer_recipe
from ai_agent.oci.limits import NetworkLimits
from ai_agent.oci.name import Reference, Repository
from ai_agent.oci.push import BlobData
from ai_agent.oci.recipe import RECIPE_SOURCE_MIN, BlobRecipe
from ai_agent.oci.remote import RegistryClient
from ai_agent.oci.types import (
    GONE,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    sha256_digest,
)
from testkit.components import RunningRegistry, require_binary, start_registry
from testkit.http_stub import DROP, Answer, QuietHandler, RegistryProxy, StubHTTPServer

pytestmark = pytest.mark.integration

FAST_RETRY = 0.01  # seconds before the first retry
LINUX_AMD64 = Platform("linux", "amd64")


# Local images -----------------------------------------------------------------------------------


@dataclass
class LocalImage:
    manifest: Descriptor
    config: Descriptor
    layers: List[Descriptor]
    blobs: Dict[str, BlobData]

    @property
    def blob_bytes(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)


def layer_tar(files: Mapping[str, bytes]) -> bytes:
    """A reproducible uncompressed layer holding `files` (path -> content)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def rootfs_tar(root: Path) -> bytes:
    """A reproducible uncompressed layer of a directory tree, symlinks kept."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(root)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def make_image(layers: Sequence[bytes], platform: Platform = LINUX_AMD64) -> LocalImage:
    layer_descriptors = [Descriptor(OCI_LAYER_TAR, sha256_digest(t), len(t)) for t in layers]
    config_document: Dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [d.digest for d in layer_descriptors]},
    }
    if platform.variant:
        config_document["variant"] = platform.variant
    config, config_bytes = Descriptor.of_json_document(OCI_CONFIG, config_document)
    manifest, manifest_bytes = Descriptor.of_json_document(
        OCI_MANIFEST,
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [d.to_json() for d in layer_descriptors],
        },
    )
    blobs: Dict[str, BlobData] = {manifest.digest: manifest_bytes, config.digest: config_bytes}
    blobs.update(zip((d.digest for d in layer_descriptors), layers))
    return LocalImage(manifest, config, layer_descriptors, blobs)


def small_image() -> LocalImage:
    """An image whose blobs no other test pushes: its content is unique."""
    return make_image([layer_tar({"hello.txt": f"hello {uuid.uuid4()}\n".encode()})])


def unique_repository(registry: RunningRegistry, purpose: str) -> Repository:
    return Repository(registry.address, f"test/{purpose}-{uuid.uuid4().hex[:12]}")


def pull_everything(client: RegistryClient, reference: Reference, image: LocalImage) -> None:
    """Pull `reference` back and check it is byte for byte the local image."""
    manifest = client.resolve(reference)
    assert manifest.descriptor.digest == image.manifest.digest
    assert manifest.data == image.blobs[image.manifest.digest]
    assert (
        client.read_blob(reference.repository, manifest.config) == image.blobs[image.config.digest]
    )
    for layer in manifest.layers:
        assert client.read_blob(reference.repository, layer) == _content(image.blobs[layer.digest])


def _content(data: BlobData) -> bytes:
    if isinstance(data, BlobRecipe):
        with data.open() as stream:
            return stream.read()
    return data if isinstance(data, bytes) else data.read_bytes()


@pytest.fixture
def client() -> Iterator[RegistryClient]:
    with RegistryClient(AnonymousKeychain(), first_retry_delay_s=FAST_RETRY) as client:
        yield client


# Push, skip, mount, chunk -----------------------------------------------------------------------


def test_second_push_uploads_nothing(client: RegistryClient, registry: RunningRegistry) -> None:
    image = small_image()
    repository = unique_repository(registry, "twice")
    first = client.push(repository, image.manifest, image.blobs, tags=["v1", "latest"])
    assert (first.uploaded_blobs, first.uploaded_bytes) == (2, image.blob_bytes)
    assert (first.skipped_bytes, first.manifests, first.retries) == (0, 2, 0)
    second = client.push(repository, image.manifest, image.blobs, tags=["v1"])
    assert (second.uploaded_blobs, second.uploaded_bytes) == (0, 0)
    assert (second.present_blobs, second.skipped_bytes) == (2, image.blob_bytes)
    for tag in ("v1", "latest"):
        pull_everything(client, Reference(repository, tag=tag), image)


def test_mounts_blobs_from_another_repository(
    client: RegistryClient, registry: RunningRegistry
) -> None:
    image = small_image()
    source = unique_repository(registry, "mount-source")
    client.push(source, image.manifest, image.blobs)
    target = unique_repository(registry, "mount-target")
    only_the_manifest = {image.manifest.digest: image.blobs[image.manifest.digest]}
    with pytest.raises(MissingBlob, match=image.config.digest):
        client.push(target, image.manifest, only_the_manifest, tags=["v1"])
    stats = client.push(target, image.manifest, only_the_manifest, tags=["v1"], mount_from=[source])
    assert (stats.mounted_blobs, stats.mounted_bytes) == (2, image.blob_bytes)
    assert stats.uploaded_bytes == 0
    pull_everything(client, Reference(target, tag="v1"), image)


def test_big_blobs_go_up_in_chunks(
    registry: RunningRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layer_file = tmp_path / "layer.tar"
    layer_file.write_bytes(layer_tar({"random.bin": os.urandom(20_000)}))
    image = make_image([layer_file.read_bytes()])
    image.blobs[image.layers[0].digest] = layer_file  # streamed from the file
    repository = unique_repository(registry, "chunked")
    with RegistryClient(AnonymousKeychain(), chunk_size=4096) as client:
        with caplog.at_level(logging.DEBUG, logger="ai_agent.oci.transport"):
            stats = client.push(repository, image.manifest, image.blobs, tags=["v1"])
        pull_everything(client, Reference(repository, tag="v1"), image)
    assert stats.uploaded_bytes == image.blob_bytes
    patches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("PATCH ")]
    assert len(patches) == -(-image.layers[0].size // 4096)


def test_a_layer_kept_as_a_recipe_goes_up_stitched_from_its_source(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(RECIPE_SOURCE_MIN + 5000))
    result, recipe = write_layer_recipe([Entry.file("models/weights.bin", weights)])
    image = make_image([_content(recipe)])
    assert image.layers[0].digest == result.descriptor.digest
    image.blobs[image.layers[0].digest] = recipe
    repository = unique_repository(registry, "recipe")
    # Chunks that end inside the tar header, the file and the trailer.
    with RegistryClient(AnonymousKeychain(), chunk_size=300_000) as client:
        stats = client.push(repository, image.manifest, image.blobs, tags=["v1"])
        pull_everything(client, Reference(repository, tag="v1"), image)
    assert stats.uploaded_bytes == image.blob_bytes


def test_pushes_and_resolves_a_multi_platform_index(
    client: RegistryClient, registry: RunningRegistry
) -> None:
    layer = layer_tar({"id": uuid.uuid4().bytes})
    platforms = [LINUX_AMD64, Platform("linux", "arm64", "v8")]
    images = tuple(make_image([layer], platform) for platform in platforms)
    amd64, arm64 = images
    entries = [
        Descriptor(OCI_MANIFEST, image.manifest.digest, image.manifest.size, platform=platform)
        for image, platform in zip(images, platforms)
    ]
    index, index_bytes = Descriptor.of_json_document(
        OCI_INDEX,
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [e.to_json() for e in entries]},
    )
    repository = unique_repository(registry, "index")
    blobs = {**amd64.blobs, **arm64.blobs, index.digest: index_bytes}
    stats = client.push(repository, index, blobs, tags=["multi"])
    # One shared layer, two configs; the shared layer counts once.
    assert (stats.uploaded_blobs, stats.present_blobs, stats.manifests) == (3, 0, 3)
    assert client.push(repository, index, blobs, tags=["multi"]).manifests == 1

    reference = Reference(repository, tag="multi")
    assert client.get_manifest(reference).descriptor == index
    assert client.resolve(reference).descriptor == entries[0]
    for spelling in ("linux/arm64", "linux/arm64/v8"):
        resolved = client.resolve(reference, Platform.parse(spelling))
        assert resolved.descriptor == entries[1] and resolved.data == arm64.blobs[entries[1].digest]
    with pytest.raises(PlatformNotFound, match="linux/amd64, linux/arm64/v8"):
        client.resolve(reference, Platform("linux", "s390x"))


def test_resolves_by_tag_and_by_digest(client: RegistryClient, registry: RunningRegistry) -> None:
    image = small_image()
    repository = unique_repository(registry, "resolve")
    client.push(repository, image.manifest, image.blobs, tags=["v1"])
    by_tag = client.resolve(Reference.parse(f"{repository}:v1"))
    by_digest = client.resolve(Reference.parse(f"{repository}@{image.manifest.digest}"))
    assert by_tag == by_digest
    assert by_tag.descriptor == image.manifest
    assert by_tag.config == image.config and list(by_tag.layers) == image.layers


def test_a_base_lock_check_finds_a_deleted_manifest_gone(
    client: RegistryClient, registry: RunningRegistry
) -> None:
    image = small_image()
    repository = unique_repository(registry, "check")
    client.push(repository, image.manifest, image.blobs, tags=["v1"])
    lock = lock_base(client, f"{repository}:v1", ["linux/amd64"])
    assert client.served_size(repository, "manifests", image.manifest.digest) == image.manifest.size
    assert client.served_size(repository, "blobs", image.config.digest) == image.config.size
    # The tag names the manifest itself: manifest, config and layer.
    assert check_lock(client, lock) == (3, [])

    # What a registry's clean-up does to an image nobody tags any more.
    delete = f"{registry.url}/v2/{repository.name}/manifests/{image.manifest.digest}"
    urllib.request.urlopen(urllib.request.Request(delete, method="DELETE")).close()
    with pytest.raises(NotFoundError):
        client.served_size(repository, "manifests", image.manifest.digest)
    checked, [finding] = check_lock(client, lock)
    assert checked == 3
    assert finding.item == f"{repository}@{image.manifest.digest} (what the tag resolved to)"
    assert finding.status == GONE
    assert finding.detail.endswith(f"on registry {registry.address} failed with HTTP 404")


def test_docker_pulls_and_runs_the_pushed_image_by_digest(
    client: RegistryClient, registry: RunningRegistry, docker_client: Any, busybox_rootfs: Path
) -> None:
    image = make_image([rootfs_tar(busybox_rootfs)])
    repository = unique_repository(registry, "busybox")
    client.push(repository, image.manifest, image.blobs)
    reference = f"{repository}@{image.manifest.digest}"
    docker_client.images.pull(reference)
    try:
        output = docker_client.containers.run(
            reference, ["/bin/sh", "-c", "echo ran-$((6 * 7))"], remove=True
        )
        assert output == b"ran-42\n"
    finally:
        docker_client.images.remove(reference, force=True)


# Verification -----------------------------------------------------------------------------------


def test_a_blob_tampered_in_storage_is_refused(
    client: RegistryClient, registry: RunningRegistry, tmp_path: Path
) -> None:
    image = small_image()
    repository = unique_repository(registry, "tampered")
    client.push(repository, image.manifest, image.blobs)
    [layer] = image.layers
    hex_digest = layer.digest.split(":", 1)[1]
    stored = (
        registry.storage_dir / f"docker/registry/v2/blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"
    )
    original = stored.read_bytes()
    stored.write_bytes(original.replace(b"hello", b"HELLO"))  # same size, other content
    with pytest.raises(DigestMismatch) as error:
        client.fetch_blob(repository, layer, tmp_path / "layer.tar")
    for name in (registry.address, repository.name, layer.digest):
        assert name in str(error.value)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DigestMismatch):
        client.read_blob(repository, layer)


def test_local_blobs_that_do_not_match_their_descriptor_are_named(
    client: RegistryClient, registry: RunningRegistry, tmp_path: Path
) -> None:
    image = small_image()
    [layer] = image.layers
    good = _content(image.blobs[layer.digest])
    repository = unique_repository(registry, "bad-local")
    image.blobs[layer.digest] = good.replace(b"hello", b"HELLO")
    with pytest.raises(BlobSourceMismatch, match=f"does not hash to .*{layer.digest}"):
        client.push(repository, image.manifest, image.blobs)
    short_file = tmp_path / "short.tar"
    short_file.write_bytes(good[:-1])
    image.blobs[layer.digest] = short_file
    with pytest.raises(BlobSourceMismatch, match=f"{short_file} has {len(good) - 1} bytes"):
        client.push(repository, image.manifest, image.blobs)


# Retries through a faulty proxy -----------------------------------------------------------------

# A fault decides, from the request's number (1-based), method and path, whether the proxy answers
# 503, drops the connection, or forwards the request.
Fault = Callable[[int, str, str], Optional[str]]


class FaultyProxy(RegistryProxy):
    """A forwarder to a real registry on loopback that fails the requests `fault` picks."""

    def __init__(self, upstream: str, fault: Fault) -> None:
        super().__init__(upstream)
        self.fault = fault
        self.faults = 0

    def intercept(self, number: int, method: str, path: str) -> Union[None, str, Answer]:
        decision = self.fault(number, method, path)
        self.faults += decision is not None
        if decision == "503":
            return (503, [], b"")
        return DROP if decision == "drop" else None


def test_push_survives_5xx_and_dropped_connections(registry: RunningRegistry) -> None:
    def first_four_fail(number: int, method: str, path: str) -> Optional[str]:
        return ("503", "drop")[number % 2] if number <= 4 else None

    image = small_image()
    with FaultyProxy(registry.address, first_four_fail) as proxy:
        repository = Repository(proxy.address, unique_repository(registry, "faults").name)
        with RegistryClient(AnonymousKeychain(), first_retry_delay_s=FAST_RETRY) as client:
            stats = client.push(repository, image.manifest, image.blobs, tags=["v1"])
            pull_everything(client, Reference(repository, tag="v1"), image)
    assert proxy.faults == 4
    assert stats.retries == 4  # one retry per failed request, none more
    assert stats.uploaded_bytes == image.blob_bytes


def test_retries_are_bounded(registry: RunningRegistry) -> None:
    image = small_image()
    with FaultyProxy(registry.address, lambda number, method, path: "503") as proxy:
        repository = Repository(proxy.address, "test/always-failing")
        limits = NetworkLimits(attempts=3)
        with RegistryClient(
            AnonymousKeychain(), limits=limits, first_retry_delay_s=FAST_RETRY, jobs=1
        ) as client:
            with pytest.raises(
                RegistryUnavailable, match=r"gave up after 3 attempt\(s\).*HTTP 503"
            ):
                client.push(repository, image.manifest, image.blobs)
    assert len(proxy.requests) == 3


def test_an_interrupted_chunked_upload_restarts_in_a_fresh_session(
    registry: RunningRegistry,
) -> None:
    patches: List[str] = []

    def drop_second_patch(number: int, method: str, path: str) -> Optional[str]:
        if method == "PATCH":
            patches.append(urlsplit(path).path)
            return "drop" if len(patches) == 2 else None
        return None

    image = make_image([layer_tar({"random.bin": os.urandom(12_000)})])
    with FaultyProxy(registry.address, drop_second_patch) as proxy:
        repository = Repository(proxy.address, unique_repository(registry, "restart").name)
        with RegistryClient(
            AnonymousKeychain(), first_retry_delay_s=FAST_RETRY, chunk_size=4096, jobs=1
        ) as client:
            stats = client.push(repository, image.manifest, image.blobs, tags=["v1"])
            pull_everything(client, Reference(repository, tag="v1"), image)
    assert stats.retries == 1
    sessions = [path for method, path in proxy.requests if method == "POST"]
    assert len(sessions) == 3  # config, then the layer twice
    chunks = -(-image.layers[0].size // 4096)
    first_session, second_session = patches[0], patches[2]
    assert first_session != second_session
    # Every chunk again, in the new session, from the start.
    assert patches == [first_session] * 2 + [second_session] * chunks


# Basic auth (htpasswd) --------------------------------------------------------------------------

USER, PASSWORD = "ci-user", "ci-pass-Zq8"


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    htpasswd = require_binary("htpasswd", "apache2-utils")
    workdir = tmp_path_factory.mktemp("htpasswd-registry")
    entry = subprocess.run(
        [htpasswd, "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    ).stdout
    (workdir / "htpasswd").write_text(entry)
    auth = {"htpasswd": {"realm": "oci-test", "path": str(workdir / "htpasswd")}}
    with start_registry(workdir, {"auth": auth}) as running:
        yield running


def _write_credential_helper(bin_dir: Path) -> None:
    helper = bin_dir / "docker-credential-oci-test"
    helper.write_text(
        "#!/bin/sh\n" f'cat >/dev/null; echo \'{{"Username": "{USER}", "Secret": "{PASSWORD}"}}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize("source", ["auths", "credsStore"])
def test_basic_auth_with_credentials_from_the_docker_config(
    htpasswd_registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    if source == "auths":
        encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        config: Dict[str, Any] = {"auths": {htpasswd_registry.address: {"auth": encoded}}}
    else:
        _write_credential_helper(tmp_path)
        monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
        config = {"credsStore": "oci-test"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    image = small_image()
    repository = unique_repository(htpasswd_registry, "basic")
    # The default keychain: $DOCKER_CONFIG.
    with RegistryClient(first_retry_delay_s=FAST_RETRY) as client:
        stats = client.push(repository, image.manifest, image.blobs, tags=["v1"])
        pull_everything(client, Reference(repository, tag="v1"), image)
    assert stats.uploaded_bytes == image.blob_bytes


@pytest.mark.parametrize("password", [None, "wrong-password-Xy1"])
def test_basic_auth_refusals_name_the_registry_and_never_the_secret(
    htpasswd_registry: RunningRegistry, password: Optional[str]
) -> None:
    keychain = (
        AnonymousKeychain()
        if password is None
        else StaticKeychain({htpasswd_registry.address: Credentials(USER, password)})
    )
    image = small_image()
    with RegistryClient(keychain, first_retry_delay_s=FAST_RETRY) as client:
        with pytest.raises(AuthenticationError) as error:
            client.push(
                unique_repository(htpasswd_registry, "refused"), image.manifest, image.blobs
            )
    message = str(error.value)
    assert htpasswd_registry.address in message and "docker login" in message
    assert password is None or password not in message


# Bearer tokens (distribution's `auth: token`) ---------------------------------------------------

TOKEN_SERVICE, TOKEN_ISSUER = "oci-test-registry", "oci-test-token-issuer"
REFRESH_TOKEN = "refresh-token-Kp3"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer(StubHTTPServer):
    """Docker's token protocol over HTTPS: signs RS256 JWTs (with the openssl CLI) granting the
    requested actions to `USER`/`PASSWORD` or to the refresh token, and only pull to anonymous
    callers. One self-signed certificate (for `localhost`) serves TLS and signs the tokens."""

    def __init__(self, workdir: Path) -> None:
        openssl = require_binary("openssl", "openssl")
        self.key, self.certificate = workdir / "token.key", workdir / "token.crt"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
            + ["-subj", f"/CN={TOKEN_ISSUER}", "-addext", "subjectAltName=DNS:localhost"]
            + ["-keyout", str(self.key), "-out", str(self.certificate)],
            check=True,
            capture_output=True,
        )
        der = subprocess.run(
            [openssl, "x509", "-in", str(self.certificate), "-outform", "DER"],
            check=True,
            capture_output=True,
        ).stdout
        self._x5c = base64.b64encode(der).decode("ascii")
        self._openssl = openssl
        self.requests: List[Tuple[str, Dict[str, List[str]], Optional[str]]] = []
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                authorization = self.headers.get("Authorization")
                valid = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                self._grant(query, authorization, authorization == valid)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                form["scope"] = form.get("scope", [""])[0].split()
                trusted = form.get("refresh_token") == [REFRESH_TOKEN]
                self._grant(form, self.headers.get("Authorization"), trusted)

            def _grant(
                self, params: Dict[str, List[str]], authorization: Optional[str], trusted: bool
            ) -> None:
                server.requests.append((self.command, params, authorization))
                if authorization is not None and not trusted:
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": server.sign(params.get("scope", []), trusted)})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.certificate, self.key)
        super().__init__(Handler, tls=tls)
        self.realm = f"https://localhost:{self.port}/token"

    def sign(self, scopes: Sequence[str], trusted: bool) -> str:
        access = []
        for scope in scopes:
            kind, rest = scope.split(":", 1)
            name, actions = rest.rsplit(":", 1)
            granted = actions.split(",") if trusted else ["pull"]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": USER if trusted else "",
            "aud": TOKEN_SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = subprocess.run(
            [self._openssl, "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(signature)}"


@pytest.fixture(scope="module")
def token_auth(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Tuple[RunningRegistry, TokenServer]]:
    workdir = tmp_path_factory.mktemp("token-registry")
    with TokenServer(workdir) as token_server:
        auth = {
            "token": {
                "realm": token_server.realm,
                "service": TOKEN_SERVICE,
                "issuer": TOKEN_ISSUER,
                "rootcertbundle": str(token_server.certificate),
            }
        }
        with start_registry(workdir, {"auth": auth}) as running:
            yield running, token_server


def test_bearer_tokens_for_push_pull_and_mount(
    token_auth: Tuple[RunningRegistry, TokenServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, token_server = token_auth
    monkeypatch.setenv("SSL_CERT_FILE", str(token_server.certificate))
    image = small_image()
    source = unique_repository(registry, "bearer-source")
    keychain = StaticKeychain({registry.address: Credentials(USER, PASSWORD)})
    with RegistryClient(keychain, first_retry_delay_s=FAST_RETRY) as client:
        pushed = client.push(source, image.manifest, image.blobs, tags=["v1"])
        target = unique_repository(registry, "bearer-target")
        mounted = client.push(target, image.manifest, image.blobs, tags=["v1"], mount_from=[source])
    assert pushed.uploaded_bytes == image.blob_bytes
    assert mounted.mounted_blobs == 2
    authenticated = [params for _, params, authorization in token_server.requests if authorization]
    assert authenticated and all(p["service"] == [TOKEN_SERVICE] for p in authenticated)
    mount_scopes = [f"repository:{source.name}:pull", f"repository:{target.name}:pull,push"]
    assert any(p["scope"] == mount_scopes for p in authenticated)

    with RegistryClient(AnonymousKeychain(), first_retry_delay_s=FAST_RETRY) as anonymous:
        pull_everything(anonymous, Reference(target, tag="v1"), image)
        with pytest.raises(AuthenticationError, match=registry.address):
            anonymous.push(
                unique_repository(registry, "bearer-denied"), image.manifest, image.blobs
            )


def test_bearer_tokens_from_an_identity_token(
    token_auth: Tuple[RunningRegistry, TokenServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    registry, token_server = token_auth
    monkeypatch.setenv("SSL_CERT_FILE", str(token_server.certificate))
    image = small_image()
    keychain = StaticKeychain({registry.address: Credentials(identity_token=REFRESH_TOKEN)})
    with RegistryClient(keychain, first_retry_delay_s=FAST_RETRY) as client:
        stats = client.push(unique_repository(registry, "refresh"), image.manifest, image.blobs)
    assert stats.uploaded_bytes == image.blob_bytes
    method, form, _ = token_server.requests[-1]
    assert method == "POST" and form["grant_type"] == ["refresh_token"]


def test_an_untrusted_token_server_certificate_is_named(
    token_auth: Tuple[RunningRegistry, TokenServer],
) -> None:
    registry, token_server = token_auth
    # The system CAs only.
    with RegistryClient(AnonymousKeychain(), first_retry_delay_s=FAST_RETRY) as client:
        with pytest.raises(TLSVerificationError, match="localhost:.*SSL_CERT_FILE"):
            client.get_manifest(Reference(unique_repository(registry, "untrusted")))
