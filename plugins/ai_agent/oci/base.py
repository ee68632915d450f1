"""Registry bases: the lock that pins `registry/repository:tag` to digests, one image per
platform, and how it is made from the registry.

Lock format (JSON, keys sorted, two-space indent, one trailing newline; locking the same
registry state again gives the same bytes):

    {"lockVersion": 1,
     "image": "registry.example.com/org/python:3.11-slim",          as the target names it
     "resolved": {"mediaType": …, "digest": "sha256:…", "size": N},  what the tag named then
     "platforms": {
        "linux/amd64": {"manifest": {"mediaType": …, "digest": …, "size": N},
                        "config": {"mediaType": …, "digest": …, "size": N},
                        "layers": [{"mediaType": …, "digest": …, "size": N,
                                    "diffID": "sha256:…"}, …]}}}

`resolved` is an index or, for a single-platform tag, the one image manifest. Builds read only
the digests: the config and the layers are fetched by digest, never by tag. The diffIDs come from
the config, so the lock alone describes every base layer (digest, diffID, size) without its bytes.

`check_lock` asks the registry, with HEAD, whether it still has every digest a lock pins.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from .errors import NotFoundError, OciError, RegistryError
from .name import Reference
from .remote import RegistryClient
from .types import GONE, MISMATCH, UNREACHABLE, Descriptor, Finding, Platform, check_digest

LOCK_VERSION = 1


class BaseLockError(OciError):
    """A base lock is malformed, or the registry's image does not fit it; the message names the
    field or the platform."""


@dataclass(frozen=True)
class LockedLayer:
    descriptor: Descriptor
    diff_id: str

    def to_json(self) -> Dict[str, Any]:
        return {**self.descriptor.to_json(), "diffID": self.diff_id}


@dataclass(frozen=True)
class LockedImage:
    """One platform's image: its manifest, config and layers, by digest."""

    manifest: Descriptor
    config: Descriptor
    layers: Tuple[LockedLayer, ...]

    def to_json(self) -> Dict[str, Any]:
        return {
            "manifest": self.manifest.to_json(),
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }


@dataclass(frozen=True)
class BaseLock:
    image: str
    resolved: Descriptor
    platforms: Mapping[str, LockedImage]

    @property
    def reference(self) -> Reference:
        return Reference.parse(self.image)

    def image_for(self, platform: str) -> LockedImage:
        if platform not in self.platforms:
            raise BaseLockError(
                f"the lock of {self.image} has no image for {platform}; it covers"
                f" {', '.join(sorted(self.platforms))}"
            )
        return self.platforms[platform]

    def to_json(self) -> Dict[str, Any]:
        return {
            "lockVersion": LOCK_VERSION,
            "image": self.image,
            "resolved": self.resolved.to_json(),
            "platforms": {name: image.to_json() for name, image in self.platforms.items()},
        }

    def dumps(self) -> bytes:
        """The canonical text of the lock."""
        text = json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
        return (text + "\n").encode("utf-8")

    @classmethod
    def loads(cls, data: bytes, source: str) -> BaseLock:
        try:
            document = json.loads(data.decode("utf-8"))
        except ValueError as error:
            raise BaseLockError(f"{source}: not a JSON document: {error}") from None
        if not isinstance(document, dict) or document.get("lockVersion") != LOCK_VERSION:
            raise BaseLockError(
                f"{source}: not a base lock of version {LOCK_VERSION}; regenerate it with this"
                " version of the tool"
            )
        where = "the lock"
        try:
            image = document["image"]
            Reference.parse(image)
            where = "resolved"
            resolved = Descriptor.from_json(document["resolved"])
            platforms = {}
            for name, entry in sorted(document["platforms"].items()):
                where = f"platforms.{name}"
                Platform.parse(name)
                platforms[name] = LockedImage(
                    Descriptor.from_json(entry["manifest"]),
                    Descriptor.from_json(entry["config"]),
                    tuple(
                        LockedLayer(Descriptor.from_json(layer), check_digest(layer["diffID"]))
                        for layer in entry["layers"]
                    ),
                )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            detail = f"no {error}" if isinstance(error, KeyError) else str(error)
            raise BaseLockError(f"{source}: {where} is malformed: {detail}") from None
        return cls(image, resolved, platforms)


def lock_base(client: RegistryClient, image: str, platforms: Sequence[str]) -> BaseLock:
    """Resolve `image` (a tag, or a digest) once, then each platform's image within what it
    resolved to, so that every platform comes from the same registry state."""
    reference = Reference.parse(image)
    top = client.get_manifest(reference)
    pinned = Reference(reference.repository, digest=top.descriptor.digest)
    locked = {}
    for text in platforms:
        try:
            platform = Platform.parse(text)
        except ValueError as error:
            raise BaseLockError(str(error)) from None
        manifest = client.resolve(pinned, platform)
        config = _parse_config(client.read_blob(reference.repository, manifest.config), image)
        config_platform = Platform(
            str(config.get("os")), str(config.get("architecture")), config.get("variant")
        )
        if not config_platform.matches(platform):
            raise BaseLockError(
                f"{image} is an image for {config_platform}, not {platform}; name a tag that"
                f" has a {platform} image, or set `platforms` to what it has"
            )
        diff_ids = config.get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(manifest.layers):
            raise BaseLockError(
                f"{image} ({platform}): its config lists {len(diff_ids)} diffIDs for"
                f" {len(manifest.layers)} layers"
            )
        locked[str(platform)] = LockedImage(
            _plain(manifest.descriptor),
            manifest.config,
            tuple(
                LockedLayer(layer, check_digest(diff_id))
                for layer, diff_id in zip(manifest.layers, diff_ids)
            ),
        )
    return BaseLock(image, _plain(top.descriptor), locked)


def check_lock(client: RegistryClient, lock: BaseLock) -> Tuple[int, List[Finding]]:
    """How many digests `lock` pins (what the tag resolved to, and each platform's manifest,
    config and layers), and the findings of those the registry no longer serves as pinned."""
    repository = lock.reference.repository
    pinned = {lock.resolved.digest: ("manifests", lock.resolved, "what the tag resolved to")}
    for name, image in sorted(lock.platforms.items()):
        pinned.setdefault(image.manifest.digest, ("manifests", image.manifest, f"{name} manifest"))
        pinned.setdefault(image.config.digest, ("blobs", image.config, f"{name} config"))
        for number, layer in enumerate(image.layers, 1):
            pinned.setdefault(
                layer.descriptor.digest, ("blobs", layer.descriptor, f"{name} layer {number}")
            )
    findings = []
    for digest, (kind, descriptor, role) in pinned.items():
        item = f"{repository}@{digest} ({role})"
        try:
            size = client.served_size(repository, kind, digest)
        except NotFoundError as error:
            findings.append(Finding(item, GONE, str(error)))
        except RegistryError as error:
            findings.append(Finding(item, UNREACHABLE, str(error)))
        else:
            if size is not None and size != descriptor.size:
                detail = f"the registry states {size} bytes, pinned: {descriptor.size}"
                findings.append(Finding(item, MISMATCH, detail))
    return len(pinned), findings


def _plain(descriptor: Descriptor) -> Descriptor:
    """The descriptor without the platform an index entry carries (the lock keys by it)."""
    return Descriptor(descriptor.media_type, descriptor.digest, descriptor.size)


def _parse_config(data: bytes, image: str) -> Dict[str, Any]:
    try:
        config = json.loads(data)
    except ValueError:
        raise BaseLockError(f"the config of {image} is not JSON") from None
    if not isinstance(config, dict):
        raise BaseLockError(f"the config of {image} is not a JSON object")
    return config
