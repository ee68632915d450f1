"""`oci_base` end to end through Pants, against the real registry and dockerd: push a busybox
base with the OCI core's writers and registry client, lock its tag with `generate-lockfiles`,
package it and run it; a layer tampered with in the registry's storage is refused when the build
pulls it again. (A missing, malformed or stale lock is refused before any pull: that is
`plugins/ai_agent/util_rules/base_image_test.py`'s.)"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator

import pytest

from ai_agent.oci.image import ConfigUpdate, Image, Layer, build_image
from ai_agent.oci.layer import Compression, Entry, LayerOptions, expand_tree, write_layer
from ai_agent.oci.name import Repository
from ai_agent.oci.push import BlobData
from ai_agent.oci.remote import RegistryClient
from ai_agent.oci.types import OCI_MANIFEST, Platform, digest_hex
from testkit.components import RunningRegistry
from testkit.pants_output import succeeded
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

NAME = "ai-agent-test-oci-base"
LOCK = f"lockfiles/oci-{NAME}.lock.json"
ARCHIVE = f"dist/base/{NAME}.tar"
GREETING = "hello from the registry base"


@dataclass(frozen=True)
class PushedBase:
    image: Image
    reference: str
    registry: RunningRegistry

    @property
    def layer_blob(self) -> Path:
        """Where the registry stores the layer's bytes (distribution's filesystem layout)."""
        hex_digest = digest_hex(self.image.layers[0].descriptor.digest)
        blobs = self.registry.storage_dir / "docker/registry/v2/blobs/sha256"
        return blobs / hex_digest[:2] / hex_digest / "data"


@pytest.fixture(scope="module")
def pushed_base(
    registry: RunningRegistry, busybox_rootfs: Path, tmp_path_factory: pytest.TempPathFactory
) -> PushedBase:
    """busybox as a gzip layer (compressed once, here: the build must carry these bytes), with a
    config that runs a greeting, pushed as `base/busybox:1`."""
    workdir = tmp_path_factory.mktemp("oci-base")
    entries = expand_tree(busybox_rootfs, ".") + [
        Entry.directory("tmp", mode=0o1777),
        Entry.content("etc/base-release", f"{NAME}\n".encode()),
    ]
    blob = workdir / "busybox.tar.gz"
    written = write_layer(entries, blob, LayerOptions(compression=Compression("gzip")))
    layer = Layer(written.descriptor, written.diff_id, str(blob), "busybox")
    image = build_image(
        Image.scratch(Platform("linux", "amd64")),
        [layer],
        ConfigUpdate(env={"PATH": "/bin"}, cmd=["/bin/sh", "-c", f"echo {GREETING}"]),
    )
    blobs: Dict[str, BlobData] = {
        image.digest: image.manifest_bytes,
        image.image_id: image.config_bytes,
        layer.descriptor.digest: blob,
    }
    repository = Repository(registry.address, "base/busybox")
    with RegistryClient() as client:
        client.push(repository, image.descriptor, blobs, tags=["1"])
    return PushedBase(image, f"{repository}:1", registry)


def _build_file(pushed: PushedBase) -> str:
    return f'oci_base(name="{NAME}", image="{pushed.reference}", platforms=["linux/amd64"])\n'


def _failed(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, f"expected a failure; stdout:\n{result.stdout}"
    return result.stderr


@pytest.fixture
def loaded_tag(docker_client: object) -> Iterator[str]:
    tag = f"{NAME}:latest"
    yield tag
    if docker_client.images.list(name=tag):  # type: ignore[attr-defined]
        docker_client.images.remove(tag, force=True)  # type: ignore[attr-defined]


def test_locks_packages_runs_and_refuses_a_tampered_base(
    scratch_repo: ScratchRepo, pushed_base: PushedBase, docker_client: object, loaded_tag: str
) -> None:
    image = pushed_base.image
    [layer] = image.layers
    # The tag names a single-platform manifest: it is what `resolved` pins, without a platform.
    manifest = {"mediaType": OCI_MANIFEST, "digest": image.digest, "size": image.descriptor.size}
    scratch_repo.write({"base/BUILD": _build_file(pushed_base)})

    succeeded(scratch_repo.run("generate-lockfiles", f"--resolve={NAME}"))
    lock_text = (scratch_repo.root / LOCK).read_text()
    assert json.loads(lock_text) == {
        "lockVersion": 1,
        "image": pushed_base.reference,
        "resolved": manifest,
        "platforms": {
            "linux/amd64": {
                "manifest": manifest,
                "config": image.config_descriptor.to_json(),
                "layers": [{**layer.descriptor.to_json(), "diffID": layer.diff_id}],
            }
        },
    }
    assert lock_text.endswith("}\n")

    succeeded(scratch_repo.run("package", f"base:{NAME}"))
    metadata = json.loads((scratch_repo.root / f"{ARCHIVE}.json").read_text())
    [built] = metadata["images"]
    # Carried byte for byte: the same gzip blob, never recompressed.
    assert built["layers"] == [{**layer.descriptor.to_json(), "diffID": layer.diff_id}]
    with open(scratch_repo.root / ARCHIVE, "rb") as archive:
        docker_client.images.load(archive)  # type: ignore[attr-defined]
    output = docker_client.containers.run(loaded_tag, remove=True)  # type: ignore[attr-defined]
    assert output.decode() == f"{GREETING}\n"

    original = pushed_base.layer_blob.read_bytes()
    tampered = bytearray(original)
    tampered[len(tampered) // 2] ^= 0xFF
    pushed_base.layer_blob.write_bytes(bytes(tampered))
    try:
        refused = _failed(scratch_repo.run("--no-local-cache", "package", f"base:{NAME}"))
    finally:
        pushed_base.layer_blob.write_bytes(original)
    assert (
        f"{layer.descriptor.digest} in repository base/busybox on registry"
        f" {pushed_base.registry.address} failed verification"
    ) in refused
    assert "corrupt or was tampered with" in refused
