from __future__ import annotations

import json
from pathlib import Path

import pytest

from .errors import InvalidManifest
from .image import Image, Index
from .referrers import (
    EMPTY_CONFIG,
    EMPTY_DESCRIPTOR,
    IN_TOTO_JSON,
    SPDX_JSON,
    artifact,
    fallback_tag,
    referrers_index,
    subject_of,
)
from .types import OCI_INDEX, OCI_MANIFEST, Descriptor, Manifest, Platform, sha256_digest

SUBJECT = Descriptor(
    OCI_MANIFEST,
    "sha256:" + "ab" * 32,
    1234,
    annotations={"org.opencontainers.image.ref.name": "latest"},
    platform=Platform("linux", "amd64"),
)
CREATED = "2000-01-01T00:00:00Z"


def test_the_empty_descriptor_is_the_two_bytes_of_an_empty_object() -> None:
    assert EMPTY_DESCRIPTOR.digest == sha256_digest(EMPTY_CONFIG)
    assert EMPTY_DESCRIPTOR.size == len(EMPTY_CONFIG) == 2


def test_an_artifact_manifest_attaches_the_document_to_its_subject(tmp_path: Path) -> None:
    document = tmp_path / "router.spdx.json"
    document.write_bytes(b'{"spdxVersion": "SPDX-2.3"}\n')
    attached = artifact(document, SPDX_JSON, SUBJECT, title=document.name, created=CREATED)
    manifest = json.loads(attached.data)
    assert manifest == {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SPDX_JSON,
        "config": {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": EMPTY_DESCRIPTOR.digest,
            "size": 2,
        },
        "layers": [
            {
                "mediaType": SPDX_JSON,
                "digest": sha256_digest(document.read_bytes()),
                "size": document.stat().st_size,
                "annotations": {"org.opencontainers.image.title": "router.spdx.json"},
            }
        ],
        # Only what names the subject: not its platform nor its annotations.
        "subject": {"mediaType": OCI_MANIFEST, "digest": SUBJECT.digest, "size": 1234},
        "annotations": {"org.opencontainers.image.created": CREATED},
    }
    # The descriptor a referrers list holds: the manifest's artifactType and annotations.
    assert attached.descriptor.to_json() == {
        "mediaType": OCI_MANIFEST,
        "digest": sha256_digest(attached.data),
        "size": len(attached.data),
        "artifactType": SPDX_JSON,
        "annotations": {"org.opencontainers.image.created": CREATED},
    }
    assert attached.blobs == {
        attached.descriptor.digest: attached.data,
        EMPTY_DESCRIPTOR.digest: b"{}",
        attached.document.digest: document,
    }
    # Deterministic: the same document gives the same bytes, from a file or from memory.
    again = artifact(
        document.read_bytes(), SPDX_JSON, SUBJECT, title=document.name, created=CREATED
    )
    assert again.data == attached.data


def test_without_a_creation_time_an_artifact_has_no_annotations() -> None:
    attached = artifact(b"{}", IN_TOTO_JSON, SUBJECT, title="p.json")
    assert "annotations" not in json.loads(attached.data)
    assert attached.descriptor.to_json()["artifactType"] == IN_TOTO_JSON
    assert "annotations" not in attached.descriptor.to_json()


def test_the_fallback_tag_is_the_algorithm_dash_the_hex() -> None:
    assert fallback_tag(SUBJECT.digest) == "sha256-" + "ab" * 32
    with pytest.raises(ValueError):
        fallback_tag("sha512:abc")


def _listing(entries: list) -> Manifest:
    descriptor, data = Descriptor.of_json_document(
        OCI_INDEX, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    )
    return Manifest(descriptor, data)


def test_a_referrers_list_is_started_extended_and_never_repeats() -> None:
    sbom = artifact(b"a", SPDX_JSON, SUBJECT, title="a", created=CREATED).descriptor
    provenance = artifact(b"b", IN_TOTO_JSON, SUBJECT, title="b").descriptor
    started = referrers_index(None, [sbom, sbom])
    assert started is not None
    descriptor, data = started
    assert descriptor.media_type == OCI_INDEX and descriptor.digest == sha256_digest(data)
    assert json.loads(data) == {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [sbom.to_json()],
    }
    assert referrers_index(Manifest(descriptor, data), [sbom]) is None

    # Another tool's entry (with fields this client does not know) stays as it was, first.
    foreign = {
        "mediaType": OCI_MANIFEST,
        "digest": "sha256:" + "cd" * 32,
        "size": 9,
        "artifactType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "future": True,
    }
    extended = referrers_index(_listing([foreign, sbom.to_json()]), [sbom, provenance])
    assert extended is not None
    assert json.loads(extended[1])["manifests"] == [foreign, sbom.to_json(), provenance.to_json()]


def test_a_tag_that_is_not_an_index_is_left_alone() -> None:
    descriptor, data = Descriptor.of_json_document(OCI_MANIFEST, {"schemaVersion": 2})
    with pytest.raises(InvalidManifest, match="not an OCI image index"):
        referrers_index(Manifest(descriptor, data), [SUBJECT])
    descriptor, data = Descriptor.of_json_document(OCI_INDEX, {"schemaVersion": 2})
    with pytest.raises(InvalidManifest, match="no `manifests` list"):
        referrers_index(Manifest(descriptor, data), [SUBJECT])


def test_documents_attach_to_the_image_or_its_platforms_manifests() -> None:
    images = [Image.scratch(Platform("linux", arch)) for arch in ("amd64", "arm64")]
    index = Index(images)
    assert subject_of(index, index.digest) == Descriptor(
        OCI_INDEX, index.digest, index.descriptor.size
    )
    arm64 = subject_of(index, images[1].digest)
    assert (arm64.media_type, arm64.size, arm64.platform) == (
        OCI_MANIFEST,
        images[1].descriptor.size,
        None,
    )
    with pytest.raises(InvalidManifest, match="is not a manifest of the image pushed"):
        subject_of(images[0], images[1].digest)
