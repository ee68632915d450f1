"""One deterministic image archive that `docker load`, skopeo (`oci-archive:`) and umoci accept.

The archive is a tar written by the layer tar writer (sorted members, explicit parent directories,
fixed mtime, numeric owners) holding:
- the OCI image layout: `oci-layout`, `index.json` and `blobs/sha256/<hex>`. `index.json` lists
  the image (or index) once per tag, annotated with `org.opencontainers.image.ref.name` = the tag
  (what `skopeo … oci-archive:FILE:TAG` and `umoci … --image DIR:TAG` look up) and
  `io.containerd.image.name` = the full name (what containerd-based loaders use);
- Docker's `manifest.json` (`Config`, `RepoTags`, `Layers` pointing into `blobs/sha256/`), which
  is all dockerd 20.10 reads, plus the legacy `repositories` file (it maps each name and tag to
  the image ID; dockerd ignores it when `manifest.json` is present).
Names are normalised the way `name.Reference` parses them (`agent` is
`docker.io/library/agent:latest`); a name with a digest is refused.

Every blob an image references is stored once, and nothing else is. Layer blobs stream from their
files and are checked against their descriptor's size (before writing) and digest (while writing);
when a check fails, an archive being written to a path is removed again.

The same files, unpacked, are an OCI image layout directory (`image_files`; `export.py` writes
one into `dist/`, its layer blobs hardlinked rather than copied).

For an index, the archive holds the index blob and every platform's manifest, config and layers;
`manifest.json` can describe only one image, so it lists the image for `docker_platform`, or the
index's first image. Never the build machine's platform: the archive's bytes must not depend on
where it was built.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .errors import OciError
from .image import Image, Index, images_of
from .layer import (
    DEFAULT_MTIME,
    Entry,
    LayerError,
    LayerOptions,
    OutputTarget,
    TarMember,
    plan_layer,
    write_tar,
)
from .name import InvalidReference, Reference
from .types import ANNOTATION_REF_NAME, OCI_INDEX, Descriptor, Platform, canonical_json, digest_hex

ANNOTATION_IMAGE_NAME = "io.containerd.image.name"
OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}


class ArchiveError(OciError):
    """The archive cannot be written as asked: a bad tag or platform, or a blob that is missing
    or does not match its descriptor."""


@dataclass(frozen=True)
class ImageFiles:
    """An image (or index) as the files of an archive or layout directory: `blobs` (every blob
    once: content for documents, a file for layers) and `documents` (`oci-layout`, `index.json`,
    Docker's `manifest.json`, `repositories`); `docker_image` is what `manifest.json` describes,
    i.e. what `docker load` gets."""

    blobs: Tuple[Entry, ...]
    documents: Tuple[Entry, ...]
    docker_image: Image


def image_files(
    target: Union[Image, Index],
    tags: Sequence[str] = (),
    *,
    docker_platform: Optional[Platform] = None,
) -> ImageFiles:
    """The files of `target` (one image, or an index of several), named by `tags`
    (`[registry/]repository[:tag]`, `:latest` when no tag is given); no blob is read."""
    references = parse_tags(tags)
    docker_image = _docker_image(target, docker_platform)
    documents = [
        Entry.content("oci-layout", canonical_json(OCI_LAYOUT)),
        Entry.content("index.json", canonical_json(_layout_index(target, references))),
        Entry.content("manifest.json", canonical_json(_docker_manifest(docker_image, references))),
    ]
    if references:
        documents.append(
            Entry.content("repositories", canonical_json(_repositories(docker_image, references)))
        )
    return ImageFiles(tuple(_blob_entries(target)), tuple(documents), docker_image)


def write_archive(
    output: OutputTarget,
    target: Union[Image, Index],
    tags: Sequence[str] = (),
    *,
    docker_platform: Optional[Platform] = None,
    mtime: int = DEFAULT_MTIME,
) -> Image:
    """Write `target`'s files (`image_files`) as an archive to `output`. Returns the image that
    `manifest.json` describes."""
    files = image_files(target, tags, docker_platform=docker_platform)
    try:
        members = plan_layer([*files.blobs, *files.documents], LayerOptions(mtime=mtime))
        _check_blob_sizes(members, target)
        write_tar(members, output)
    except LayerError as error:
        raise ArchiveError(f"cannot write the image archive: {error}") from None
    return files.docker_image


def parse_tags(tags: Sequence[str]) -> List[Reference]:
    """`tags` as references, each once; a bad name, or one with a digest, is refused."""
    references: List[Reference] = []
    for tag in tags:
        try:
            reference = Reference.parse(tag)
        except InvalidReference as error:
            raise ArchiveError(f"invalid image name {tag!r}: {error}") from None
        if reference.digest is not None:
            raise ArchiveError(f"{tag!r}: an archive is named by tags, not digests")
        if reference not in references:
            references.append(reference)
    return references


def _docker_image(target: Union[Image, Index], platform: Optional[Platform]) -> Image:
    images = images_of(target)
    if platform is None:
        return images[0]
    for image in images:
        if image.platform == platform:
            return image
    available = ", ".join(str(image.platform) for image in images)
    raise ArchiveError(f"docker platform {platform} is not in the archive (it has {available})")


def _blob_path(descriptor: Descriptor) -> str:
    return f"blobs/sha256/{digest_hex(descriptor.digest)}"


def _blob_entries(target: Union[Image, Index]) -> List[Entry]:
    """Every referenced blob once: the index, then per image its manifest, config and layers."""
    entries: Dict[str, Entry] = {}

    def add_document(descriptor: Descriptor, data: bytes) -> None:
        path = _blob_path(descriptor)
        entries.setdefault(path, Entry.content(path, data))

    if isinstance(target, Index):
        add_document(target.descriptor, target.index_bytes)
    for image in images_of(target):
        add_document(image.descriptor, image.manifest_bytes)
        add_document(image.config_descriptor, image.config_bytes)
        for layer in image.layers:
            path = _blob_path(layer.descriptor)
            entries.setdefault(path, layer.blob_entry(path))
    return list(entries.values())


def _check_blob_sizes(members: Sequence[TarMember], target: Union[Image, Index]) -> None:
    """Refuse a layer file whose size differs from its descriptor before streaming gigabytes."""
    sizes = {member.name: member.size for member in members}
    for image in images_of(target):
        for layer in image.layers:
            actual = sizes[_blob_path(layer.descriptor)]
            if actual != layer.descriptor.size:
                raise ArchiveError(
                    f"layer {layer.descriptor.digest}: {layer.path} holds {actual} bytes,"
                    f" its descriptor says {layer.descriptor.size}"
                )


def _layout_index(target: Union[Image, Index], references: Sequence[Reference]) -> Dict[str, Any]:
    descriptors = [
        dataclasses.replace(
            target.descriptor,
            annotations={ANNOTATION_REF_NAME: str(ref.tag), ANNOTATION_IMAGE_NAME: str(ref)},
        )
        for ref in references
    ] or [target.descriptor]
    return {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [descriptor.to_json() for descriptor in descriptors],
    }


def _docker_manifest(image: Image, references: Sequence[Reference]) -> List[Dict[str, Any]]:
    return [
        {
            "Config": _blob_path(image.config_descriptor),
            "RepoTags": [str(ref) for ref in references],
            "Layers": [_blob_path(layer.descriptor) for layer in image.layers],
        }
    ]


def _repositories(image: Image, references: Sequence[Reference]) -> Dict[str, Dict[str, str]]:
    repositories: Dict[str, Dict[str, str]] = {}
    for ref in references:
        repositories.setdefault(str(ref.repository), {})[str(ref.tag)] = digest_hex(image.image_id)
    return repositories
