"""Images and indexes: config, manifest and index documents, computed once and kept pure.

Modelled on go-containerregistry's `pkg/v1` and `mutate`: a `Layer` is a descriptor, a diffID and
the file holding its blob; an `Image` is config bytes plus layers, from which the manifest and all
digests are derived when it is made; `build_image` stacks new layers and a `ConfigUpdate` on a base
image (`Image.scratch` for none); an `Index` groups images for several platforms. Nothing here
reads or writes files: blobs are only named by path, for the archive writer to stream.

Rules for a built image:
- the base config document is the starting point (fields this module does not know survive);
  `created` is fixed (default 2000-01-01T00:00:00Z, or derived from a SOURCE_DATE_EPOCH-style
  integer with `created_from_epoch`);
- base layers are carried as they are: same bytes, digest, size and diffID. A Docker media type is
  renamed to its OCI twin (`…rootfs.diff.tar.gzip` → `…layer.v1.tar+gzip`, same bytes) because the
  manifest written is an OCI manifest;
- history: the base's entries, then one entry per new layer (`created_by` from the layer, never a
  host path or a timestamp), then one `empty_layer` entry naming the config fields changed;
- Env: base order kept, a key set again is replaced in place, new keys are appended in the given
  order; `${NAME}` in a value expands to NAME's value so far (so `${PATH}` extends the base PATH;
  an unset PATH expands to the runtime default, any other unset name is an error);
- a new Entrypoint resets an inherited Cmd unless a Cmd is given too (Dockerfile semantics);
- Labels and ExposedPorts merge with the base's; the other fields replace.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .errors import OciError
from .layer import Entry
from .recipe import BlobRecipe
from .types import (
    DOCKER_LAYER_TAR_GZIP,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER_TAR,
    OCI_LAYER_TAR_GZIP,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    check_digest,
    sha256_digest,
)

DEFAULT_CREATED = "2000-01-01T00:00:00Z"
# What runtimes use when an image sets no PATH (moby's and containerd's default).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_OCI_LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
_DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
_OCI_LAYER_MEDIA_TYPES = frozenset({OCI_LAYER_TAR, OCI_LAYER_TAR_GZIP, _OCI_LAYER_TAR_ZSTD})
# Docker layer media types and the OCI ones that name the same bytes.
_OCI_TWIN = {DOCKER_LAYER_TAR_GZIP: OCI_LAYER_TAR_GZIP, _DOCKER_LAYER_TAR: OCI_LAYER_TAR}
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_PORT = re.compile(r"^([0-9]{1,5})(?:/(tcp|udp|sctp))?$")


class ImageError(OciError, ValueError):
    """An image, config update or index is inconsistent; the message says which part."""


def created_from_epoch(epoch: int) -> str:
    """The RFC 3339 UTC time of a SOURCE_DATE_EPOCH-style integer, for `created`."""
    if epoch < 0:
        raise ImageError(f"epoch must not be negative, got {epoch}")
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@dataclass(frozen=True)
class Layer:
    """A layer blob: its descriptor, its diffID (sha256 of the uncompressed tar), the file that
    holds its bytes (or the descriptor that holds its `recipe`) and, for new layers, the history
    text describing it."""

    descriptor: Descriptor
    diff_id: str
    path: str
    created_by: str = ""
    recipe: Optional[BlobRecipe] = None

    def blob_entry(self, path: str) -> Entry:
        """The blob as a file at `path` of an archive or layout, checked against its digest
        while it streams."""
        if self.recipe is not None:
            return Entry.stitched(path, self.recipe, mode=0o644, digest=self.descriptor.digest)
        return Entry.file(path, self.path, mode=0o644, digest=self.descriptor.digest)

    @property
    def is_local(self) -> bool:
        """Whether the blob's bytes are here (a push may go without those the registry has)."""
        if self.recipe is not None:
            return all(os.path.isfile(source) for source in self.recipe.sources)
        return os.path.isfile(self.path)

    def __post_init__(self) -> None:
        check_digest(self.diff_id)

    @property
    def manifest_descriptor(self) -> Descriptor:
        """The descriptor as an OCI manifest lists it (Docker media types renamed, bytes same)."""
        media_type = _OCI_TWIN.get(self.descriptor.media_type, self.descriptor.media_type)
        if media_type not in _OCI_LAYER_MEDIA_TYPES:
            raise ImageError(
                f"layer {self.descriptor.digest} has media type {self.descriptor.media_type!r},"
                " which an OCI image manifest cannot list"
            )
        return dataclasses.replace(self.descriptor, media_type=media_type, platform=None)


class Image:
    """Config bytes and layers. The manifest and every digest are computed once, here; the config
    bytes are kept exactly as given, so a base image keeps its image ID."""

    def __init__(
        self,
        config_bytes: bytes,
        layers: Sequence[Layer],
        annotations: Optional[Mapping[str, str]] = None,
    ) -> None:
        self.config_bytes = config_bytes
        self.config = _parse_config(config_bytes)
        self.layers: Tuple[Layer, ...] = tuple(layers)
        self.platform = _platform_of(self.config)
        diff_ids = self.config.get("rootfs", {}).get("diff_ids", [])
        if list(diff_ids) != [layer.diff_id for layer in self.layers]:
            raise ImageError(
                f"config lists {len(diff_ids)} diff_ids that do not match the"
                f" {len(self.layers)} layers given: {diff_ids} vs"
                f" {[layer.diff_id for layer in self.layers]}"
            )
        self.config_descriptor = Descriptor(
            OCI_CONFIG, sha256_digest(config_bytes), len(config_bytes)
        )
        manifest: Dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.config_descriptor.to_json(),
            "layers": [layer.manifest_descriptor.to_json() for layer in self.layers],
        }
        if annotations:
            manifest["annotations"] = dict(annotations)
        self.descriptor, self.manifest_bytes = Descriptor.of_json_document(
            OCI_MANIFEST, manifest, platform=self.platform
        )

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any],
        layers: Sequence[Layer],
        annotations: Optional[Mapping[str, str]] = None,
    ) -> Image:
        """An image whose config is `config`, encoded as canonical JSON."""
        return cls(canonical_json(config), layers, annotations)

    @classmethod
    def from_blobs(
        cls, config_bytes: bytes, layer_blobs: Sequence[Tuple[Descriptor, str]]
    ) -> Image:
        """A (base) image from its config bytes and its layer blobs as (descriptor, path) in
        manifest order; each layer's diffID is read from the config."""
        diff_ids = _parse_config(config_bytes).get("rootfs", {}).get("diff_ids", [])
        if len(diff_ids) != len(layer_blobs):
            raise ImageError(
                f"config lists {len(diff_ids)} diff_ids but {len(layer_blobs)} layers were given"
            )
        layers = [
            Layer(descriptor, diff_id, path)
            for (descriptor, path), diff_id in zip(layer_blobs, diff_ids)
        ]
        return cls(config_bytes, layers)

    @classmethod
    def scratch(cls, platform: Platform) -> Image:
        """The empty image for `platform`: what `FROM scratch` builds on."""
        config = {
            **platform.to_json(),
            "created": DEFAULT_CREATED,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
        }
        return cls.from_config(config, [])

    @property
    def digest(self) -> str:
        """The manifest digest: what a registry and `image@sha256:` references name."""
        return self.descriptor.digest

    @property
    def image_id(self) -> str:
        """The config digest: what `docker images` shows as the image ID."""
        return self.config_descriptor.digest


def _parse_config(config_bytes: bytes) -> Dict[str, Any]:
    try:
        config = json.loads(config_bytes)
    except ValueError as error:
        raise ImageError(f"image config is not JSON: {error}") from None
    if not isinstance(config, dict):
        raise ImageError("image config is not a JSON object")
    return config


def _platform_of(config: Mapping[str, Any]) -> Platform:
    try:
        return Platform(config["os"], config["architecture"], config.get("variant") or None)
    except KeyError as error:
        raise ImageError(f"image config has no {error.args[0]!r}") from None


class Index:
    """Images for several platforms under one digest (an OCI image index)."""

    def __init__(
        self, images: Sequence[Image], annotations: Optional[Mapping[str, str]] = None
    ) -> None:
        self.images: Tuple[Image, ...] = tuple(images)
        if not self.images:
            raise ImageError("an index needs at least one image")
        platforms = [str(image.platform) for image in self.images]
        duplicates = sorted({p for p in platforms if platforms.count(p) > 1})
        if duplicates:
            raise ImageError(f"an index holds one image per platform; repeated: {duplicates}")
        document: Dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [image.descriptor.to_json() for image in self.images],
        }
        if annotations:
            document["annotations"] = dict(annotations)
        self.descriptor, self.index_bytes = Descriptor.of_json_document(OCI_INDEX, document)

    @property
    def digest(self) -> str:
        return self.descriptor.digest

    def image_for(self, platform: Platform) -> Image:
        for image in self.images:
            if image.platform == platform:
                return image
        available = ", ".join(str(image.platform) for image in self.images)
        raise ImageError(f"the index has no image for {platform}; it has {available}")


def images_of(target: Union[Image, Index]) -> Tuple[Image, ...]:
    """The image, or each platform's image of the index, in index order."""
    return target.images if isinstance(target, Index) else (target,)


def image_metadata(
    target: Union[Image, Index], tags: Sequence[str], docker_image: Image
) -> Dict[str, Any]:
    """What the `image` command writes beside the archive: the manifest or index to push, its
    tags, the image `docker load` gets, and every platform's image with its layers."""
    return {
        **target.descriptor.to_json(),
        "tags": list(tags),
        "docker": {"imageID": docker_image.image_id, "platform": str(docker_image.platform)},
        "images": [
            {
                "platform": str(image.platform),
                "manifest": image.descriptor.to_json(),
                "config": image.config_descriptor.to_json(),
                "imageID": image.image_id,
                "layers": [
                    {**layer.descriptor.to_json(), "diffID": layer.diff_id}
                    for layer in image.layers
                ],
            }
            for image in images_of(target)
        ],
    }


# Building ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigUpdate:
    """Changes to the container config (the `config` object of an image config), with the
    Docker/OCI field names in the JSON form accepted by `from_json`."""

    env: Mapping[str, str] = field(default_factory=dict)
    entrypoint: Optional[Sequence[str]] = None
    cmd: Optional[Sequence[str]] = None
    working_dir: Optional[str] = None
    user: Optional[str] = None
    exposed_ports: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: Optional[str] = None
    healthcheck: Optional[Mapping[str, Any]] = None

    def __post_init__(self) -> None:
        for name, mapping in (("Env", self.env), ("Labels", self.labels)):
            if not _is_string_mapping(mapping):
                raise ImageError(f"{name} must map strings to strings, got {mapping!r}")
        for key in self.env:
            if not key or "=" in key:
                raise ImageError(f"Env name {key!r} must be non-empty and contain no `=`")
        for name, value in (
            ("Entrypoint", self.entrypoint),
            ("Cmd", self.cmd),
            ("ExposedPorts", self.exposed_ports),
        ):
            if value is not None and not _is_string_list(value):
                raise ImageError(f"{name} must be a list of strings, got {value!r}")
        for name, text in (
            ("WorkingDir", self.working_dir),
            ("User", self.user),
            ("StopSignal", self.stop_signal),
        ):
            if text is not None and not isinstance(text, str):
                raise ImageError(f"{name} must be a string, got {text!r}")
        if self.healthcheck is not None and not isinstance(self.healthcheck, Mapping):
            raise ImageError(f"Healthcheck must be an object, got {self.healthcheck!r}")
        if self.working_dir is not None and not self.working_dir.startswith("/"):
            raise ImageError(f"WorkingDir must be absolute, got {self.working_dir!r}")
        for port in self.exposed_ports:
            _port_key(port)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ConfigUpdate:
        """Read `{"Env": {...}, "Entrypoint": [...], "Cmd": [...], "WorkingDir": "/app",
        "User": "65532", "ExposedPorts": ["8080/tcp"], "Labels": {...}, "StopSignal": "SIGTERM",
        "Healthcheck": {...}}`; every key optional, unknown keys refused."""
        unknown = sorted(set(document) - set(_JSON_FIELDS))
        if unknown:
            raise ImageError(f"unknown config fields {unknown}; known: {sorted(_JSON_FIELDS)}")
        return cls(**{_JSON_FIELDS[key]: value for key, value in document.items()})

    def changed_fields(self) -> List[str]:
        """The Docker/OCI names of the fields this update sets, for the history entry."""
        return [
            key
            for key, attribute in _JSON_FIELDS.items()
            if (
                getattr(self, attribute)
                if key in _MERGED_FIELDS
                else getattr(self, attribute) is not None
            )
        ]

    def apply(self, container_config: Mapping[str, Any]) -> Dict[str, Any]:
        """The base's container config with this update applied (the base is not modified)."""
        result = copy.deepcopy(dict(container_config))
        if self.env:
            result["Env"] = _merge_env(result.get("Env") or [], self.env)
        if self.entrypoint is not None:
            result["Entrypoint"] = list(self.entrypoint)
            if self.cmd is None:
                result.pop("Cmd", None)
        if self.cmd is not None:
            result["Cmd"] = list(self.cmd)
        if self.exposed_ports:
            ports = dict(result.get("ExposedPorts") or {})
            ports.update({_port_key(port): {} for port in self.exposed_ports})
            result["ExposedPorts"] = ports
        if self.labels:
            result["Labels"] = {**(result.get("Labels") or {}), **self.labels}
        for key, value in (
            ("WorkingDir", self.working_dir),
            ("User", self.user),
            ("StopSignal", self.stop_signal),
            ("Healthcheck", self.healthcheck),
        ):
            if value is not None:
                result[key] = copy.deepcopy(value)
        return result


_JSON_FIELDS = {
    "Env": "env",
    "Entrypoint": "entrypoint",
    "Cmd": "cmd",
    "WorkingDir": "working_dir",
    "User": "user",
    "ExposedPorts": "exposed_ports",
    "Labels": "labels",
    "StopSignal": "stop_signal",
    "Healthcheck": "healthcheck",
}


# Fields merged into the base's rather than replacing them: empty means "no change".
_MERGED_FIELDS = frozenset({"Env", "ExposedPorts", "Labels"})


def _is_string_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(key, str) and isinstance(item, str) for key, item in value.items()
    )


def _is_string_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)


def _port_key(port: str) -> str:
    """`8080` or `8080/udp` as the config's `ExposedPorts` key (`8080/tcp`)."""
    match = _PORT.match(port)
    if not match or not 0 < int(match.group(1)) < 65536:
        raise ImageError(f"exposed port must look like 8080 or 8080/tcp|udp|sctp, got {port!r}")
    return f"{int(match.group(1))}/{match.group(2) or 'tcp'}"


def _merge_env(base: Sequence[str], updates: Mapping[str, str]) -> List[str]:
    values: Dict[str, str] = {}
    order: List[str] = []
    for item in base:
        name, _, value = item.partition("=")
        if name not in values:
            order.append(name)
        values[name] = value
    for name, value in updates.items():
        values[name] = _expand(name, value, values)
        if name not in order:
            order.append(name)
    return [f"{name}={values[name]}" for name in order]


def _expand(name: str, value: str, environment: Mapping[str, str]) -> str:
    def lookup(match: re.Match[str]) -> str:
        referenced = match.group(1)
        if referenced in environment:
            return environment[referenced]
        if referenced == "PATH":
            return DEFAULT_PATH
        raise ImageError(f"Env {name}={value!r} refers to ${{{referenced}}}, which is not set")

    return _ENV_REFERENCE.sub(lookup, value)


def build_image(
    base: Image,
    layers: Sequence[Layer] = (),
    update: ConfigUpdate = ConfigUpdate(),
    *,
    created: str = DEFAULT_CREATED,
    annotations: Optional[Mapping[str, str]] = None,
) -> Image:
    """`base` with `layers` appended and `update` applied (go-containerregistry's `mutate`)."""
    config = copy.deepcopy(base.config)
    config["created"] = created
    config["config"] = update.apply(config.get("config") or {})
    config["rootfs"] = {
        "type": "layers",
        "diff_ids": [layer.diff_id for layer in (*base.layers, *layers)],
    }
    history = list(config.get("history") or [])
    for layer in layers:
        history.append({"created_by": layer.created_by} if layer.created_by else {})
    changed = update.changed_fields()
    if changed:
        history.append({"created_by": "config: " + ", ".join(changed), "empty_layer": True})
    if history:
        config["history"] = history
    return Image.from_config(config, (*base.layers, *layers), annotations)
