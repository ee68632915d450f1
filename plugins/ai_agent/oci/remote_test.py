"""Pulling against small loopback servers: what is read is verified before it is kept. The real
registry is exercised by tests/oci/test_registry.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from .conftest import MANIFEST, StubServer, manifest_answer
from .errors import DigestMismatch
from .name import Reference, Repository
from .remote import RegistryClient
from .types import OCI_LAYER_TAR, OCI_MANIFEST, Descriptor, sha256_digest

# Verification -----------------------------------------------------------------------------------


def test_manifest_by_digest_must_match(client: RegistryClient) -> None:
    wanted = sha256_digest(b"the real one")
    with StubServer(lambda request: manifest_answer(MANIFEST)) as server:
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


def test_streamed_download_hashes_what_it_writes(client: RegistryClient, tmp_path: Path) -> None:
    content = bytes(range(256)) * 8192  # 2 MiB: several read buffers
    descriptor = Descriptor(OCI_LAYER_TAR, sha256_digest(content), len(content))
    with StubServer(lambda request: (200, {}, content)) as server:
        client.fetch_blob(Repository(server.address, "app"), descriptor, tmp_path / "blob")
    assert hashlib.sha256((tmp_path / "blob").read_bytes()).hexdigest() == descriptor.digest[7:]
    assert [p.name for p in tmp_path.iterdir()] == ["blob"]
