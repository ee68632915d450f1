"""The SBOMs and provenance of an image, attached by the push command (`python -m ai_agent.oci
push --attach`, what `publish` runs) as OCI 1.1 referrers, read back from a real registry (Debian
`docker-registry`, distribution 2.8, which has no referrers API) through the registry API alone:
the referrers tag `sha256-<hex>` of each subject lists artifact manifests whose subject is that
manifest and whose one layer is the local file, byte for byte; pushing again sends nothing."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from ai_agent.oci.name import Repository
from ai_agent.oci.referrers import EMPTY_DESCRIPTOR, IN_TOTO_JSON, SPDX_JSON, artifact, attach
from ai_agent.oci.remote import RegistryClient
from ai_agent.oci.types import OCI_INDEX, OCI_MANIFEST, Descriptor
from testkit.components import RunningRegistry
from testkit.http_stub import Answer, RegistryProxy

pytestmark = pytest.mark.integration

EPOCH = 946684800
PLATFORMS = ("linux/amd64", "linux/arm64")


def _oci(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ai_agent.oci", *args], capture_output=True, text=True
    )


def _get(registry: RunningRegistry, path: str, accept: str = "") -> Tuple[int, bytes, str]:
    """A plain GET of the registry API: (status, body, Content-Type)."""
    request = urllib.request.Request(f"http://{registry.address}{path}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers.get("Content-Type", "")


def _manifest(registry: RunningRegistry, name: str, reference: str) -> Dict[str, Any]:
    status, body, content_type = _get(
        registry, f"/v2/{name}/manifests/{reference}", f"{OCI_MANIFEST}, {OCI_INDEX}"
    )
    assert status == 200, body
    document = json.loads(body)
    assert content_type == document["mediaType"]
    return document


def _blob(registry: RunningRegistry, name: str, digest: str) -> bytes:
    status, body, _ = _get(registry, f"/v2/{name}/blobs/{digest}")
    assert status == 200, body
    return body


def _image(directory: Path) -> Tuple[Path, Dict[str, Any]]:
    """A two-platform image spec (one small layer each) and its metadata."""
    directory.mkdir()
    layer_spec = directory / "layer.json"
    layer_spec.write_text(
        json.dumps({"entries": [{"path": "hello.txt", "content": f"{uuid.uuid4()}\n"}]})
    )
    layer = _oci("layer", "--spec", str(layer_spec), "--output-dir", str(directory / "layer"))
    assert layer.returncode == 0, layer.stderr
    spec = directory / "spec.json"
    images = [
        {"platform": platform, "layers": ["layer/descriptor.json"], "config": {"User": "1"}}
        for platform in PLATFORMS
    ]
    spec.write_text(json.dumps({"source_date_epoch": EPOCH, "images": images}))
    described = _oci("image", "--spec", str(spec), "--metadata", str(directory / "image.json"))
    assert described.returncode == 0, described.stderr
    return spec, json.loads((directory / "image.json").read_text())


def _documents(directory: Path, metadata: Dict[str, Any]) -> List[Tuple[str, str, Path]]:
    """An SPDX document per platform and a provenance statement, as `--attach` arguments."""
    attached = []
    for image in metadata["images"]:
        path = directory / f"agent.{image['platform'].replace('/', '-')}.spdx.json"
        path.write_text(json.dumps({"spdxVersion": "SPDX-2.3", "name": image["platform"]}))
        attached.append((SPDX_JSON, image["manifest"]["digest"], path))
    provenance = directory / "agent.provenance.json"
    provenance.write_text(json.dumps({"_type": "https://in-toto.io/Statement/v1"}))
    attached.append((IN_TOTO_JSON, metadata["digest"], provenance))
    return attached


def test_push_attaches_sboms_and_provenance_read_back_through_the_referrers_tag(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    spec, metadata = _image(tmp_path / "image")
    documents = _documents(tmp_path, metadata)
    name = f"referrers/{uuid.uuid4().hex[:12]}"
    attach_args = [arg for document in documents for arg in ("--attach", *map(str, document))]
    push_args = ["push", "--spec", str(spec), "--ref", f"{registry.address}/{name}:v1"]

    first = _oci(*push_args, *attach_args)
    assert first.returncode == 0, first.stderr
    tags = {f"sha256-{subject.split(':')[1]}" for _, subject, _ in documents}
    assert "attached 3 referrers (0 already there; referrers tags written: " in first.stdout
    assert all(tag in first.stdout for tag in tags)

    # The image is what `image` described, untouched by what is attached to it.
    assert _manifest(registry, name, "v1")["manifests"] == [
        image["manifest"] for image in metadata["images"]
    ]
    # No referrers API: the fallback tags are the lists.
    for _, subject, _ in documents:
        status, _, _ = _get(registry, f"/v2/{name}/referrers/{subject}")
        assert status == 404
    subjects = {
        metadata["digest"]: {"mediaType": OCI_INDEX, "size": metadata["size"]},
        **{
            image["manifest"]["digest"]: {
                "mediaType": OCI_MANIFEST,
                "size": image["manifest"]["size"],
            }
            for image in metadata["images"]
        },
    }
    for media_type, subject, path in documents:
        listing = _manifest(registry, name, f"sha256-{subject.split(':')[1]}")
        assert listing["mediaType"] == OCI_INDEX and listing["schemaVersion"] == 2
        (entry,) = listing["manifests"]
        assert entry["mediaType"] == OCI_MANIFEST
        assert entry["artifactType"] == media_type
        assert entry["annotations"] == {"org.opencontainers.image.created": "2000-01-01T00:00:00Z"}
        referrer = _manifest(registry, name, entry["digest"])
        assert referrer["artifactType"] == media_type
        assert referrer["annotations"] == entry["annotations"]
        assert referrer["subject"] == {"digest": subject, **subjects[subject]}
        assert referrer["config"] == EMPTY_DESCRIPTOR.to_json()
        assert _blob(registry, name, EMPTY_DESCRIPTOR.digest) == b"{}"
        (layer,) = referrer["layers"]
        assert layer["mediaType"] == media_type
        assert layer["annotations"] == {"org.opencontainers.image.title": path.name}
        assert _blob(registry, name, layer["digest"]) == path.read_bytes()

    listings = {tag: _manifest(registry, name, tag) for tag in tags}
    again = _oci(*push_args[:-1], f"{registry.address}/{name}:v2", *attach_args)
    assert again.returncode == 0, again.stderr
    assert ": uploaded 0 blobs (0 B)," in again.stdout
    assert (
        "attached 0 referrers (3 already there; referrers tags written: none);"
        " uploaded 0 blobs (0 B), skipped 0 (0 B: 0 mounted, 0 already present),"
        " put 0 manifests" in again.stdout
    )
    assert {tag: _manifest(registry, name, tag) for tag in tags} == listings


def test_a_referrers_list_keeps_what_others_attached(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    """A signature another tool listed under the tag stays; a changed SBOM is added beside the
    old one (both are referrers of the image); the list never repeats an entry."""
    spec, metadata = _image(tmp_path / "image")
    repository = Repository(registry.address, f"referrers/{uuid.uuid4().hex[:12]}")
    pushed = _oci("push", "--spec", str(spec), "--ref", f"{repository}:v1")
    assert pushed.returncode == 0, pushed.stderr
    subject = Descriptor(OCI_INDEX, metadata["digest"], metadata["size"])
    signature = artifact(
        b"signature", "application/vnd.dev.cosign.simplesigning.v1+json", subject, title="sig"
    )
    old = artifact(b'{"old": 1}', SPDX_JSON, subject, title="agent.spdx.json")
    new = artifact(b'{"new": 2}', SPDX_JSON, subject, title="agent.spdx.json")
    with RegistryClient() as client:
        assert attach(client, repository, [signature]).attached == 1
        assert attach(client, repository, [old, signature]).attached == 1
        stats = attach(client, repository, [new, old])
    assert (stats.attached, stats.present) == (1, 1)
    listing = _manifest(registry, repository.name, f"sha256-{metadata['digest'].split(':')[1]}")
    assert [entry["digest"] for entry in listing["manifests"]] == [
        signature.descriptor.digest,
        old.descriptor.digest,
        new.descriptor.digest,
    ]


_REFERRERS_API = re.compile(r"/referrers/sha256:[0-9a-f]{64}(\?|$)")


class ReferrersApiProxy(RegistryProxy):
    """The real registry behind a forwarder that plays a registry with the referrers API: it
    answers `GET /v2/<name>/referrers/<digest>` with an (empty) index, and, if `subject_header`,
    a manifest PUT with the `OCI-Subject` header naming the manifest's subject."""

    def __init__(self, upstream: str, subject_header: bool) -> None:
        super().__init__(upstream)
        self.subject_header = subject_header

    def intercept(self, number: int, method: str, path: str) -> Optional[Answer]:
        if not _REFERRERS_API.search(path):
            return None
        listing = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        return (200, [("Content-Type", OCI_INDEX)], json.dumps(listing).encode())

    def added_headers(self, method: str, path: str, body: bytes) -> List[Tuple[str, str]]:
        if method != "PUT" or "/manifests/" not in path or not self.subject_header:
            return []
        subject: Optional[Dict[str, Any]] = json.loads(body).get("subject")
        return [("OCI-Subject", subject["digest"])] if subject else []


@pytest.mark.parametrize("subject_header", [True, False])
def test_a_registry_with_the_referrers_api_gets_no_referrers_tag(
    registry: RunningRegistry, tmp_path: Path, subject_header: bool
) -> None:
    """Where the registry says it lists referrers itself (the `OCI-Subject` header on the PUT,
    else an answer from the referrers API), no referrers tag is written."""
    spec, metadata = _image(tmp_path / "image")
    name = f"referrers/{uuid.uuid4().hex[:12]}"
    with ReferrersApiProxy(registry.address, subject_header) as proxy:
        pushed = _oci("push", "--spec", str(spec), "--ref", f"{proxy.address}/{name}:v1")
        assert pushed.returncode == 0, pushed.stderr
        subject = Descriptor(OCI_INDEX, metadata["digest"], metadata["size"])
        with RegistryClient() as client:
            stats = attach(
                client,
                Repository(proxy.address, name),
                [artifact(b"{}", IN_TOTO_JSON, subject, title="agent.provenance.json")],
            )
    assert (stats.attached, stats.tags_written) == (1, ())
    asked = [path for _, path in proxy.requests if _REFERRERS_API.search(path)]
    assert asked == ([] if subject_header else [f"/v2/{name}/referrers/{metadata['digest']}"])
    status, _, _ = _get(registry, f"/v2/{name}/manifests/sha256-{metadata['digest'][7:]}")
    assert status == 404
