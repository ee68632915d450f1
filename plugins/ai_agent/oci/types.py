"""The nouns every other OCI module speaks: media types, digests, platforms, descriptors, manifests
and the one canonical JSON encoding from which every digest of a JSON document is taken."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from .errors import InvalidManifest, OciError

# Media types (OCI image-spec v1.0/1.1 and the Docker v2 schema 2 equivalents we must read).
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# The config of an artifact manifest that has none (image-spec v1.1: the two bytes `{}`).
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_LAYER_TAR_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
GZIP_LAYER_MEDIA_TYPES = frozenset({OCI_LAYER_TAR_GZIP, DOCKER_LAYER_TAR_GZIP})

# The annotation that names an image inside an OCI layout's index.json.
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


class InvalidDigest(OciError, ValueError):
    pass


def sha256_digest(data: bytes) -> str:
    """The `sha256:<hex>` digest of a byte string held in memory (JSON documents, not layers)."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    """Return `digest` if it is a well-formed sha256 digest, else raise.

    Digests become file names (`blobs/sha256/<hex>`) and URL path segments, so anything else is
    refused before it can reach a path.
    """
    if not _DIGEST_RE.fullmatch(digest):
        raise InvalidDigest(f"not a sha256 digest: {digest!r}")
    return digest


def digest_hex(digest: str) -> str:
    return check_digest(digest).split(":", 1)[1]


def canonical_json(document: Any) -> bytes:
    """Encode a JSON document the one way this library ever encodes it: sorted keys, no
    insignificant whitespace, UTF-8. The same document therefore always has the same digest."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


# How a lock check found a pinned item (`Finding.status`): the server says it has no such file or
# digest (HTTP 404/410); it serves one of another size than the lock pins; or no answer either way
# (no connection, a timeout, 5xx after retries, a refusal), which says nothing about the item.
GONE = "gone"
MISMATCH = "mismatch"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Finding:
    """A pinned item that a lock check did not find served as pinned, and what the server said."""

    item: str
    status: str
    detail: str

    def to_json(self) -> Dict[str, str]:
        return {"item": self.item, "status": self.status, "detail": self.detail}


def check_report(checked: int, findings: Sequence[Finding]) -> bytes:
    """What each core's lock `check` command prints: how many pinned items it asked about, and
    every finding, so that the caller can tell a healthy lock from one it did not read."""
    return canonical_json({"checked": checked, "problems": [f.to_json() for f in findings]})


# The variant an image without one has: arm64 images are v8 and arm ones v7, as containerd's
# platform matcher assumes.
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os/arch[/variant]`, e.g. `linux/amd64` or `linux/arm64/v8`."""
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ValueError(f"platform must look like os/arch[/variant], got {text!r}")
        return cls(*parts)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Platform:
        return cls(document["os"], document["architecture"], document.get("variant"))

    def to_json(self) -> Dict[str, str]:
        document = {"os": self.os, "architecture": self.architecture}
        if self.variant:
            document["variant"] = self.variant
        return document

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def matches(self, other: Platform) -> bool:
        """Equal once an omitted variant means the architecture's default (`linux/arm64` is
        `linux/arm64/v8`, `linux/arm` is `linux/arm/v7`), as containerd compares platforms. The
        one comparison of platforms: base locks, registry indexes and base images all use it."""
        return self._normalized() == other._normalized()

    def _normalized(self) -> Platform:
        return Platform(
            self.os, self.architecture, self.variant or _DEFAULT_VARIANTS.get(self.architecture)
        )


@dataclass(frozen=True)
class Descriptor:
    """What points at a blob: its media type, digest and size (OCI image-spec descriptor), and
    for an artifact manifest in a referrers list, its `artifactType`."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Optional[Platform] = None
    artifact_type: Optional[str] = None

    def __post_init__(self) -> None:
        check_digest(self.digest)
        if self.size < 0:
            raise ValueError(f"negative size in descriptor for {self.digest}")

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Descriptor:
        platform = document.get("platform")
        return cls(
            media_type=document["mediaType"],
            digest=document["digest"],
            size=int(document["size"]),
            annotations=dict(document.get("annotations") or {}),
            platform=Platform.from_json(platform) if platform else None,
            artifact_type=document.get("artifactType"),
        )

    def to_json(self) -> Dict[str, Any]:
        document: Dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            document["annotations"] = dict(self.annotations)
        if self.platform:
            document["platform"] = self.platform.to_json()
        if self.artifact_type:
            document["artifactType"] = self.artifact_type
        return document

    @classmethod
    def of_json_document(
        cls, media_type: str, document: Any, **kwargs: Any
    ) -> tuple[Descriptor, bytes]:
        """Encode `document` canonically and describe the resulting bytes."""
        data = canonical_json(document)
        return cls(media_type, sha256_digest(data), len(data), **kwargs), data


@dataclass(frozen=True)
class Manifest:
    """A manifest or index: the descriptor that names it and its exact bytes (never re-encoded,
    since re-encoding would change the digest)."""

    descriptor: Descriptor
    data: bytes = field(repr=False)

    @property
    def is_index(self) -> bool:
        return self.descriptor.media_type in INDEX_MEDIA_TYPES

    @cached_property
    def document(self) -> Dict[str, Any]:
        try:
            document = json.loads(self.data)
        except ValueError:
            raise InvalidManifest(f"manifest {self.descriptor.digest} is not JSON") from None
        if not isinstance(document, dict):
            raise InvalidManifest(f"manifest {self.descriptor.digest} is not a JSON object")
        return document

    @property
    def config(self) -> Descriptor:
        return self._descriptors("config", expect_index=False)[0]

    @property
    def layers(self) -> Tuple[Descriptor, ...]:
        return self._descriptors("layers", expect_index=False)

    @property
    def manifests(self) -> Tuple[Descriptor, ...]:
        """The entries of an index."""
        return self._descriptors("manifests", expect_index=True)

    def _descriptors(self, key: str, expect_index: bool) -> Tuple[Descriptor, ...]:
        if self.is_index != expect_index:
            kind = "an index" if self.is_index else "an image manifest"
            raise InvalidManifest(f"{self.descriptor.digest} is {kind} and has no {key!r}")
        value: Any = self.document.get(key)
        try:
            entries = [value] if isinstance(value, dict) else list(value)
            return tuple(Descriptor.from_json(entry) for entry in entries)
        except (TypeError, KeyError, ValueError):
            raise InvalidManifest(
                f"manifest {self.descriptor.digest} has a missing or malformed {key!r}"
            ) from None
