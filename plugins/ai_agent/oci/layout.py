"""One OCI image layout shared by many images (`dist/oci/`): every blob once under
`blobs/sha256/`, and `index.json` listing each image once per tag.

An entry of `index.json` is the image's descriptor annotated with its name as
`org.opencontainers.image.ref.name` (`router:latest`: what `skopeo … oci:dist/oci:router:latest`
and `umoci … --image dist/oci:router:latest` look up), its full name as
`io.containerd.image.name`, and the target that placed it (`ANNOTATION_OWNER`). Placing an image
again replaces its target's entries and any other entry under one of its names (left by a target
since renamed or removed: Pants refuses two targets with one name before building anything). A
blob that no entry reaches any more is garbage. This module decides what the index holds and
which blobs it reaches; `export.py` writes them.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Union

from .archive import ANNOTATION_IMAGE_NAME, OCI_LAYOUT, parse_tags
from .errors import OciError
from .image import Image, Index
from .types import (
    ANNOTATION_REF_NAME,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    canonical_json,
    digest_hex,
)

# The target (Pants address) whose image an entry is: whose next package replaces it.
ANNOTATION_OWNER = "ai-agent.target"  # as the images' own label of their target
LAYOUT_FILE = "oci-layout"
LAYOUT_FILE_BYTES = canonical_json(OCI_LAYOUT)


class LayoutError(OciError):
    """The shared layout's `index.json` or one of its documents cannot be read."""


def ref_name(tag: str) -> str:
    """An image's name in the layout: the tag as written (`router:latest`,
    `registry.example:5000/team/router:v1`), with `:latest` where it names no tag."""
    return tag if ":" in tag.rpartition("/")[2] else f"{tag}:latest"


def layout_entries(
    target: Union[Image, Index], tags: Sequence[str], owner: str
) -> List[Dict[str, Any]]:
    """`target`'s entries for the layout's `index.json`: one per tag (one without a name if it
    has no tag), each naming `owner`."""
    full_names = {ref_name(tag): str(parse_tags([tag])[0]) for tag in tags}
    annotations = [
        {ANNOTATION_REF_NAME: name, ANNOTATION_IMAGE_NAME: full, ANNOTATION_OWNER: owner}
        for name, full in full_names.items()
    ] or [{ANNOTATION_OWNER: owner}]
    return [
        dataclasses.replace(target.descriptor, annotations=annotation).to_json()
        for annotation in annotations
    ]


def _annotation(entry: Mapping[str, Any], key: str) -> Optional[str]:
    value = (entry.get("annotations") or {}).get(key)
    return value if isinstance(value, str) else None


def read_index(data: Optional[bytes], path: str) -> List[Dict[str, Any]]:
    """The entries of the layout's `index.json` (`data`; None: there is none yet)."""
    if data is None:
        return []
    try:
        manifests = json.loads(data)["manifests"]
        if not isinstance(manifests, list) or not all(isinstance(m, dict) for m in manifests):
            raise TypeError("manifests is not a list of descriptors")
    except (ValueError, KeyError, TypeError) as error:
        raise LayoutError(
            f"{path}: not an OCI image index ({error}); remove the layout directory and package"
            " again"
        ) from None
    return manifests


def merged_index(
    current: Sequence[Mapping[str, Any]], owner: str, entries: Sequence[Mapping[str, Any]]
) -> bytes:
    """The layout's `index.json` with `owner`'s entries replaced by `entries` (none: the owner's
    image leaves the layout), sorted by name then owner, so that its bytes follow what it holds,
    not the order in which images were placed."""
    names = {_annotation(entry, ANNOTATION_REF_NAME) for entry in entries} - {None}
    kept = [
        entry
        for entry in current
        if _annotation(entry, ANNOTATION_OWNER) != owner
        and _annotation(entry, ANNOTATION_REF_NAME) not in names
    ]
    merged = sorted(
        [*kept, *entries],
        key=lambda entry: (
            _annotation(entry, ANNOTATION_REF_NAME) or "",
            _annotation(entry, ANNOTATION_OWNER) or "",
            str(entry.get("digest")),
        ),
    )
    return canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": merged})


def reachable_blobs(
    entries: Sequence[Mapping[str, Any]], read_blob: Callable[[str], Optional[bytes]]
) -> Set[str]:
    """The hex digests of every blob the entries reach: indexes, manifests, configs, layers.
    `read_blob(hex)` gives a document's bytes, or None if the layout lacks it (then only the
    document itself counts)."""
    reached: Set[str] = set()
    pending: List[Mapping[str, Any]] = list(entries)
    while pending:
        descriptor = pending.pop()
        digest = descriptor.get("digest")
        try:
            hex_digest = digest_hex(str(digest))
        except OciError:
            continue
        if hex_digest in reached:
            continue
        reached.add(hex_digest)
        media_type = descriptor.get("mediaType")
        if media_type not in INDEX_MEDIA_TYPES and media_type not in MANIFEST_MEDIA_TYPES:
            continue
        data = read_blob(hex_digest)
        if data is None:
            continue
        try:
            document = json.loads(data)
        except ValueError:
            continue
        if media_type in INDEX_MEDIA_TYPES:
            pending.extend(document.get("manifests") or [])
        else:
            pending.extend([document.get("config") or {}, *(document.get("layers") or [])])
    return reached
