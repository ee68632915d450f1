"""`./pants publish` pushes an agent's image and attaches its SBOM and provenance beside it, in
one push step per agent: read back from the real registry (Debian `docker-registry`,
distribution 2.8, no referrers API) through the registry API alone, the referrers tag of the
image lists both documents, each artifact manifest names the image as its subject, and each
document is the file `package` wrote in dist/, byte for byte; the image's digest is the one
`package` printed; publishing again attaches and uploads nothing.

Real components: Pants 2.17 with this plugin (no pantsd) against a scratch repo holding the real
pants.toml and lockfiles; the agent's Debian base comes from deb.debian.org or the test cache.
No dockerd.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from typing import Any, Dict

import pytest

from testkit.components import RunningRegistry
from testkit.pants_output import succeeded
from testkit.pants_repo import AGENTS_SKELETON, ScratchRepo

pytestmark = pytest.mark.integration

AGENT = "agents/tiny:agent"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SPDX = "application/spdx+json"
IN_TOTO = "application/vnd.in-toto+json"


def _files(repository: str) -> Dict[str, str]:
    return {
        **AGENTS_SKELETON,
        "agents/tiny/BUILD": f"""\
python_sources(name="src", sources=["tiny_agent/*.py"])
ai_agent(
    name="agent",
    entry_point="tiny_agent",
    dependencies=[":src"],
    repository="{repository}",
    image_tags=["1.0"],
)
""",
        "agents/tiny/tiny_agent/__main__.py": 'print("tiny")\n',
        "agents/tiny/agent.yaml": "name: tiny\n",
    }


def _get(registry: RunningRegistry, path: str, accept: str = "") -> bytes:
    request = urllib.request.Request(f"{registry.url}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=30) as response:
        return bytes(response.read())


def _json(registry: RunningRegistry, path: str, accept: str) -> Dict[str, Any]:
    return dict(json.loads(_get(registry, path, accept)))


def test_publish_attaches_the_sbom_and_provenance_as_referrers(
    registry: RunningRegistry, tmp_path_factory: pytest.TempPathFactory
) -> None:
    repo = ScratchRepo.create(tmp_path_factory.mktemp("publish") / "repo")
    name = "publish/tiny"
    repository = f"{registry.address}/{name}"
    repo.write(_files(repository))

    first = succeeded(repo.run("publish", AGENT))
    dist = repo.root / "dist"
    metadata = json.loads((dist / "agents.tiny/agent.tar.json").read_text())
    digest = metadata["digest"]
    assert f"pushed {repository}@{digest}: uploaded " in first, first
    assert (
        f"referrers of {repository}@{digest}: attached 2 referrers (0 already there; referrers"
        f" tags written: sha256-{digest[7:]});" in first
    ), first
    manifest = _get(registry, f"{name}/manifests/1.0", OCI_MANIFEST)
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest

    listing = _json(registry, f"{name}/manifests/sha256-{digest[7:]}", OCI_INDEX)
    assert listing["mediaType"] == OCI_INDEX
    referrers = {entry["artifactType"]: entry for entry in listing["manifests"]}
    documents = {SPDX: metadata["sbom"]["spdx"][0], IN_TOTO: metadata["sbom"]["provenance"]}
    assert sorted(referrers) == sorted(documents), listing
    for artifact_type, path in documents.items():
        entry = referrers[artifact_type]
        artifact = _json(registry, f"{name}/manifests/{entry['digest']}", OCI_MANIFEST)
        assert artifact["artifactType"] == artifact_type
        assert artifact["subject"] == {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": metadata["size"],
        }
        assert artifact["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        assert entry["annotations"] == artifact["annotations"]
        (layer,) = artifact["layers"]
        assert layer["mediaType"] == artifact_type
        assert _get(registry, f"{name}/blobs/{layer['digest']}") == (dist / path).read_bytes()

    again = succeeded(repo.run("publish", AGENT))
    assert f"pushed {repository}@{digest}: uploaded 0 blobs (0 B)," in again, again
    assert (
        f"referrers of {repository}@{digest}: attached 0 referrers (2 already there; referrers"
        " tags written: none); uploaded 0 blobs (0 B), skipped 0 (0 B: 0 mounted, 0 already"
        " present), put 0 manifests" in again
    ), again
    assert _json(registry, f"{name}/manifests/sha256-{digest[7:]}", OCI_INDEX) == listing
