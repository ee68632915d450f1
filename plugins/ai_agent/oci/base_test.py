"""Unit tests of registry bases: the lock format, and the `lock-base`, `pull-blob` and
`check-base` commands against a loopback server that serves an image the way a registry does."""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from .__main__ import main
from .auth import AnonymousKeychain
from .base import BaseLock, BaseLockError, check_lock
from .conftest import Answer, Request, StubServer
from .limits import NetworkLimits
from .remote import RegistryClient
from .types import (
    DOCKER_CONFIG,
    DOCKER_LAYER_TAR_GZIP,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Descriptor,
    sha256_digest,
)

REPOSITORY = "base/python"


class FakeRegistry:
    """Documents and blobs served by digest (and an index or manifest under tag `1`), with the
    paths that were asked for."""

    def __init__(self) -> None:
        self.manifests: Dict[str, Tuple[str, bytes]] = {}
        self.blobs: Dict[str, bytes] = {}

    def add_blob(self, media_type: str, data: bytes) -> Descriptor:
        self.blobs[sha256_digest(data)] = data
        return Descriptor(media_type, sha256_digest(data), len(data))

    def add_manifest(self, media_type: str, document: Any, tag: str = "") -> Descriptor:
        descriptor, data = Descriptor.of_json_document(media_type, document)
        for key in (descriptor.digest, tag):
            if key:
                self.manifests[key] = (media_type, data)
        return descriptor

    def add_image(
        self, platform: Dict[str, str], layer_contents: List[bytes], tag: str = ""
    ) -> Tuple[Descriptor, Descriptor, List[Descriptor]]:
        # The layers stand in for gzip blobs; their diffIDs need only differ from the digests.
        layers = [self.add_blob(DOCKER_LAYER_TAR_GZIP, data) for data in layer_contents]
        diff_ids = [sha256_digest(b"uncompressed " + data) for data in layer_contents]
        config = self.add_blob(
            DOCKER_CONFIG,
            json.dumps({**platform, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode(),
        )
        manifest = self.add_manifest(
            DOCKER_MANIFEST,
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_MANIFEST,
                "config": config.to_json(),
                "layers": [layer.to_json() for layer in layers],
            },
            tag,
        )
        return manifest, config, layers

    def answer(self, request: Request) -> Answer:
        prefix = f"/v2/{REPOSITORY}/"
        kind, _, key = request.path[len(prefix) :].partition("/")
        if kind == "manifests" and key in self.manifests:
            media_type, data = self.manifests[key]
            return (
                200,
                {"Content-Type": media_type, "Docker-Content-Digest": sha256_digest(data)},
                data,
            )
        if kind == "blobs" and key in self.blobs:
            return 200, {}, self.blobs[key]
        return 404, {}, b'{"errors": [{"code": "NOT_FOUND", "message": "unknown"}]}'


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


def test_lock_base_pins_each_platform_without_downloading_layers(
    registry: FakeRegistry, tmp_path: Path
) -> None:
    amd64 = registry.add_image({"os": "linux", "architecture": "amd64"}, [b"a1", b"a2"])
    arm64 = registry.add_image({"os": "linux", "architecture": "arm64"}, [b"r1"])
    index = registry.add_manifest(
        OCI_INDEX,
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {**amd64[0].to_json(), "platform": {"os": "linux", "architecture": "amd64"}},
                {**arm64[0].to_json(), "platform": {"os": "linux", "architecture": "arm64"}},
            ],
        },
        tag="1",
    )
    lock_path = tmp_path / "lock.json"
    with StubServer(registry.answer) as server:
        image = f"{server.address}/{REPOSITORY}:1"
        status = main(
            ["lock-base", "--image", image, "--platform", "linux/arm64/v8"]
            + ["--platform", "linux/amd64", "--output", str(lock_path)]
        )
    assert status == 0
    layer_digests = {layer.digest for _, _, layers in (amd64, arm64) for layer in layers}
    assert not [r.path for r in server.requests if r.path.rsplit("/", 1)[1] in layer_digests]

    data = lock_path.read_bytes()
    document = json.loads(data)
    assert data == (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
    manifest, config, layers = amd64
    assert document == {
        "lockVersion": 1,
        "image": image,
        "resolved": index.to_json(),
        "platforms": {
            "linux/amd64": {
                "manifest": manifest.to_json(),
                "config": config.to_json(),
                "layers": [
                    {**layers[0].to_json(), "diffID": sha256_digest(b"uncompressed a1")},
                    {**layers[1].to_json(), "diffID": sha256_digest(b"uncompressed a2")},
                ],
            },
            "linux/arm64/v8": {
                "manifest": arm64[0].to_json(),
                "config": arm64[1].to_json(),
                "layers": [{**arm64[2][0].to_json(), "diffID": sha256_digest(b"uncompressed r1")}],
            },
        },
    }
    assert BaseLock.loads(data, "lock.json").dumps() == data


def test_a_single_platform_tag_must_be_for_the_platform_asked(
    registry: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    registry.add_image({"os": "linux", "architecture": "amd64"}, [b"a1"], tag="1")
    with StubServer(registry.answer) as server:
        image = f"{server.address}/{REPOSITORY}:1"
        output = tmp_path / "lock.json"
        args = ["lock-base", "--image", image, "--output", str(output)]
        assert main([*args, "--platform", "linux/amd64"]) == 0
        assert list(json.loads(output.read_text())["platforms"]) == ["linux/amd64"]
        assert main([*args, "--platform", "linux/s390x"]) == 2
    assert capsys.readouterr().err == (
        f"error: {image} is an image for linux/amd64, not linux/s390x; name a tag that has a"
        " linux/s390x image, or set `platforms` to what it has\n"
    )


def test_pull_blob_keeps_only_verified_bytes(
    registry: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    layer = registry.add_blob(OCI_LAYER_TAR, b"layer bytes")
    output = tmp_path / "blobs" / "layer"
    with StubServer(registry.answer) as server:
        args = ["pull-blob", "--repository", f"{server.address}/{REPOSITORY}"]
        args += ["--digest", layer.digest, "--size", str(layer.size), "--output", str(output)]
        assert main(args) == 0
        assert output.read_bytes() == b"layer bytes"
        output.unlink()

        registry.blobs[layer.digest] = b"layer bytez"
        assert main(args) == 2
    assert list(output.parent.iterdir()) == []
    error = capsys.readouterr().err
    assert error.startswith(
        f"error: {layer.digest} in repository {REPOSITORY} on registry {server.address} failed"
        " verification: received 11 bytes"
    )


def _lock_document() -> Dict[str, Any]:
    digest = sha256_digest(b"x")
    descriptor = {"mediaType": OCI_MANIFEST, "digest": digest, "size": 1}
    return {
        "lockVersion": 1,
        "image": "r.example/base:1",
        "resolved": descriptor,
        "platforms": {
            "linux/amd64": {
                "manifest": descriptor,
                "config": {**descriptor, "mediaType": OCI_CONFIG},
                "layers": [{**descriptor, "mediaType": OCI_LAYER_TAR, "diffID": digest}],
            }
        },
    }


def test_a_lock_names_what_is_malformed_or_missing() -> None:
    lock = BaseLock.loads(json.dumps(_lock_document()).encode(), "lock.json")
    assert lock.reference.repository.name == "base"
    with pytest.raises(BaseLockError, match="has no image for linux/arm64; it covers linux/amd64"):
        lock.image_for("linux/arm64")

    broken = _lock_document()
    broken["platforms"]["linux/amd64"]["layers"][0]["diffID"] = "sha256:short"
    with pytest.raises(BaseLockError, match="lock.json: platforms.linux/amd64 is malformed"):
        BaseLock.loads(json.dumps(broken).encode(), "lock.json")
    del broken["resolved"]
    with pytest.raises(BaseLockError, match="lock.json: resolved is malformed: no 'resolved'"):
        BaseLock.loads(json.dumps(broken).encode(), "lock.json")
    with pytest.raises(BaseLockError, match="not a base lock of version 1"):
        BaseLock.loads(b'{"lockVersion": 2}', "lock.json")


def test_pull_blob_from_a_registry_that_never_answers_stops_within_the_limits_given(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    layer = Descriptor(OCI_LAYER_TAR, sha256_digest(b"layer"), 5)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections queue, nothing answers
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        args = ["pull-blob", "--repository", f"{address}/{REPOSITORY}", "--digest", layer.digest]
        args += ["--size", "5", "--output", str(tmp_path / "blob")]
        args += ["--read-timeout", "0.5", "--attempts", "10", "--total-timeout", "1"]
        started = time.monotonic()
        assert main(args) == 2
        assert time.monotonic() - started < 5
    assert re.fullmatch(
        f"error: downloading blob {layer.digest} in repository {REPOSITORY} on registry"
        rf" {address} failed \(gave up after 1 attempt\(s\) in \d+ s: another would start past"
        r" the total limit of 1 s\); last error: \S+: connected, but nothing arrived within 0.5 s",
        capsys.readouterr().err.strip(),
    )


def test_check_base_names_each_digest_gone_or_served_with_another_size(
    registry: FakeRegistry, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    manifest, config, layers = registry.add_image(
        {"os": "linux", "architecture": "amd64"}, [b"a1", b"a2"], tag="1"
    )
    lock_path = tmp_path / "lock.json"
    with StubServer(registry.answer) as server:
        image = f"{server.address}/{REPOSITORY}"
        assert (
            main(
                ["lock-base", "--image", f"{image}:1", "--platform", "linux/amd64"]
                + ["--output", str(lock_path)]
            )
            == 0
        )
        check = ["check-base", "--lock", str(lock_path)]
        capsys.readouterr()
        server.requests.clear()
        assert main(check) == 0
        # The single-platform tag resolved to the manifest itself: each digest is asked once,
        # with HEAD, and never by tag.
        assert json.loads(capsys.readouterr().out) == {"checked": 4, "problems": []}
        assert sorted((r.method, r.path.rsplit("/", 1)[1]) for r in server.requests) == sorted(
            ("HEAD", d.digest) for d in (manifest, config, *layers)
        )

        del registry.blobs[layers[1].digest]
        registry.blobs[config.digest] += b" "
        assert main(check) == 0
    layer_path = f"/v2/{REPOSITORY}/blobs/{layers[1].digest}"
    assert json.loads(capsys.readouterr().out) == {
        "checked": 4,
        "problems": [
            {
                "item": f"{image}@{config.digest} (linux/amd64 config)",
                "status": "mismatch",
                "detail": f"the registry states {config.size + 1} bytes, pinned: {config.size}",
            },
            {
                "item": f"{image}@{layers[1].digest} (linux/amd64 layer 2)",
                "status": "gone",
                "detail": f"HEAD http://{server.address}{layer_path} for repository {REPOSITORY}"
                f" on registry {server.address} failed with HTTP 404",
            },
        ],
    }


def test_a_registry_that_does_not_answer_is_unreachable_not_gone(tmp_path: Path) -> None:
    lock = BaseLock.loads(json.dumps(_lock_document()).encode(), "lock.json")
    with StubServer(lambda request: (503, {}, b"")) as server:
        lock = BaseLock(f"{server.address}/base:1", lock.resolved, lock.platforms)
        limits = NetworkLimits(attempts=2)
        with RegistryClient(
            AnonymousKeychain(), limits=limits, first_retry_delay_s=0.001
        ) as client:
            checked, findings = check_lock(client, lock)
    # One digest stands for all four in the made-up lock.
    assert checked == 1
    [finding] = findings
    assert finding.status == "unreachable"
    assert "(gave up after 2 attempt(s)" in finding.detail and "HTTP 503" in finding.detail
