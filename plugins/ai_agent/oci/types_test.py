from __future__ import annotations

import pytest

from .errors import InvalidManifest
from .types import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_MANIFEST,
    Descriptor,
    Manifest,
    Platform,
)


@pytest.mark.parametrize(
    "first, second, same",
    [
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64", "linux/arm64/v7", False),
        ("linux/arm", "linux/arm/v7", True),
        ("linux/arm", "linux/arm/v6", False),
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
    ],
)
def test_an_omitted_variant_is_the_architectures_default(
    first: str, second: str, same: bool
) -> None:
    assert Platform.parse(first).matches(Platform.parse(second)) is same
    assert Platform.parse(second).matches(Platform.parse(first)) is same


def _manifest(media_type: str, document: object) -> Manifest:
    descriptor, data = Descriptor.of_json_document(media_type, document)
    return Manifest(descriptor, data)


def test_manifest_lists_what_it_references() -> None:
    config = Descriptor(OCI_CONFIG, "sha256:" + "ab" * 32, 2)
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


def test_a_descriptor_keeps_its_artifact_type_and_names_it_only_when_set() -> None:
    digest = "sha256:" + "0" * 64
    document = {
        "mediaType": OCI_MANIFEST,
        "digest": digest,
        "size": 3,
        "artifactType": "application/spdx+json",
    }
    descriptor = Descriptor.from_json(document)
    assert descriptor.artifact_type == "application/spdx+json"
    assert descriptor.to_json() == document
    assert "artifactType" not in Descriptor(OCI_MANIFEST, digest, 3).to_json()
