"""A weights file big enough for a layer of its own is kept as a recipe (`oci/recipe.py`): the
layer step reads and hashes it once and writes a few KiB, and no copy of the layer ever enters
Pants' store. Whatever needs the blob stitches it from the recipe and the source file: the OCI
layout and the archive in dist/ (`package`), the stream into `docker load` (`run`) and the
upload (`publish`); each must give the bytes the layer's digest names, and the running
container must read the weights file as it is in the repo.

Real components: Pants 2.17 with this plugin and one pantsd against a scratch repo holding the
real pants.toml and lockfiles; dockerd (`run`); the Debian `docker-registry` (`publish`). The
agent's Debian base comes from deb.debian.org or the test cache.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import toml

from testkit.components import RunningRegistry
from testkit.pants_output import succeeded
from testkit.pants_repo import AGENTS_SKELETON, ScratchRepo

pytestmark = pytest.mark.integration

AGENT = "agents/big:agent"
# A 3 MiB file over a 1 MiB threshold: its own layer, kept as a recipe.
THRESHOLD = "--ai-agents-weight-layer-threshold-mib=1"
WEIGHTS_SIZE = 3 * 1024 * 1024 + 777
DIST = "dist/agents.big"
STORE = "store"


def _agent_files(repository: str, weights_sha256: str) -> Dict[str, str]:
    return {
        **AGENTS_SKELETON,
        "agents/weights/BUILD": 'resource(name="big", source="big.bin")\n',
        "agents/big/BUILD": f"""\
python_sources(name="src", sources=["big_agent/*.py"])
ai_agent(
    name="agent",
    entry_point="big_agent",
    dependencies=[":src"],
    weights=["//agents/weights:big"],
    repository="{repository}",
)
""",
        "agents/big/big_agent/__main__.py": (
            "import hashlib\n"
            'with open("/models/big.bin", "rb") as weights:\n'
            '    print("weights sha256", hashlib.sha256(weights.read()).hexdigest())\n'
        ),
        "agents/big/agent.yaml": (
            f"name: big\nmodels:\n  - name: big.bin\n    sha256: '{weights_sha256}'\n"
        ),
    }


def _new_weights(repo: ScratchRepo, repository: str) -> bytes:
    weights = os.urandom(WEIGHTS_SIZE)
    path = repo.root / "agents/weights/big.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(weights)
    repo.write(_agent_files(repository, hashlib.sha256(weights).hexdigest()))
    return weights


def _weights_layer(repo: ScratchRepo) -> Dict[str, Any]:
    metadata = json.loads((repo.root / DIST / "agent.tar.json").read_text())
    (layer,) = (layer for layer in metadata["images"][0]["layers"] if layer["kind"] == "weights")
    return dict(layer)


def _store_files(repo: ScratchRepo) -> List[str]:
    """The digests (hex) of the files of 512 KiB or more in the scratch repo's own Pants store
    (`STORE`, beside it), which Pants keeps as plain files named by digest."""
    return [path.name for path in (repo.root.parent / STORE / "immutable/files").glob("*/*")]


def _file_in_tar(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        member = tar.extractfile(name)
        assert member is not None, name
        return member.read()


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ScratchRepo]:
    # The plugin's defaults: an OCI layout in dist/, no archive unless asked for.
    scratch = ScratchRepo.create(tmp_path_factory.mktemp("big-weights") / "repo", archives=False)
    # A store of its own, empty at first, that the test reads (never one outside the test).
    config = toml.loads((scratch.root / "pants.toml").read_text())
    config["GLOBAL"]["local_store_dir"] = str(scratch.root.parent / STORE)
    (scratch.root / "pants.toml").write_text(toml.dumps(config))
    with scratch.with_pantsd() as daemon:
        yield daemon


def test_big_weights_are_stitched_into_every_output_and_never_stored_as_a_layer(
    repo: ScratchRepo,
    registry: RunningRegistry,
    docker_client: Any,
    loaded_images: List[str],
) -> None:
    repository = f"{registry.address}/weights/big"
    weights = _new_weights(repo, repository)
    weights_sha256 = hashlib.sha256(weights).hexdigest()
    succeeded(repo.run(THRESHOLD, "package", AGENT))
    layer = _weights_layer(repo)
    digest = layer["digest"]
    blob = f"blobs/sha256/{digest[7:]}"

    # The layout's blob is the layer's bytes, the weights file inside; no archive by default.
    layout_blob = repo.root / "dist/oci" / blob
    assert _sha256_file(layout_blob) == digest and layout_blob.stat().st_size == layer["size"]
    assert _file_in_tar(layout_blob.read_bytes(), "models/big.bin") == weights
    assert not (repo.root / DIST / "agent.tar").exists()
    # Asked for, the archive holds the same blob.
    succeeded(repo.run(THRESHOLD, "--ai-agents-archives", "package", AGENT))
    archive_blob = _file_in_tar((repo.root / DIST / "agent.tar").read_bytes(), blob)
    assert archive_blob == layout_blob.read_bytes()

    # Pants stored the weights file (the source it read) but never the layer.
    stored = _store_files(repo)
    assert weights_sha256 in stored
    assert digest[7:] not in stored

    # `run` streams the image into `docker load`: the container reads the weights as they are.
    metadata = json.loads((repo.root / DIST / "agent.tar.json").read_text())
    loaded_images.extend(metadata["tags"])
    ran = succeeded(repo.run(THRESHOLD, "run", AGENT, timeout=600))
    assert f"weights sha256 {weights_sha256}" in ran, ran

    # `publish` uploads the stitched blob: the registry has the layer's bytes.
    succeeded(repo.run(THRESHOLD, "publish", AGENT))
    with urllib.request.urlopen(
        f"{registry.url}/v2/weights/big/blobs/{digest}", timeout=60
    ) as response:
        assert "sha256:" + hashlib.sha256(response.read()).hexdigest() == digest

    # New weights: the new blob is stitched, and the old one, which no image has, goes.
    _new_weights(repo, repository)
    succeeded(repo.run(THRESHOLD, "package", AGENT))
    new_digest = _weights_layer(repo)["digest"]
    assert new_digest != digest
    layout_blobs = os.listdir(repo.root / "dist/oci/blobs/sha256")
    assert new_digest[7:] in layout_blobs and digest[7:] not in layout_blobs
    assert _sha256_file(repo.root / "dist/oci" / f"blobs/sha256/{new_digest[7:]}") == new_digest
