"""The JSON specs the plugin hands the `layer` and `image` commands (and `export --spec`), read
into layer entries and images with type checks whose errors name the file and the key.

Relative paths inside a spec are relative to the spec file's directory. Unknown keys are refused.

Layer spec (every key but `entries` optional):
    {"compression": "none" | "gzip",        default "none" (use it for weights)
     "gzip_level": 1..9,                     default 6
     "source_date_epoch": 946684800,         the mtime of every member
     "uid": 0, "gid": 0,                     the default owner
     "created_by": "…",                      the image history text (default: the entry paths)
     "entries": [                            each with `path` and exactly one of the middle keys
        {"path": "app/main.py", "source": "src/main.py"},
        {"path": "app/VERSION", "content": "1.0\\n"},                 UTF-8 text
        {"path": "tmp", "directory": true, "mode": "1777"},
        {"path": "usr/bin/python", "symlink": "/usr/bin/python3.11"},
        {"path": "app/lib", "tree": "src/lib"},               a host directory, recursively
        {"path": "models/w.safetensors", "source": "w.st", "digest": "sha256:…"},   verified
        … optional per entry: "mode" (octal string, kept as given), "uid", "gid"
     ]}

Image spec (`images` required; one image gives a manifest, several an index):
    {"tags": ["registry.example/agents/foo:1.0"],
     "source_date_epoch": 946684800,         the archive's mtime, and `created` unless given
     "created": "2000-01-01T00:00:00Z",
     "docker_platform": "linux/amd64",       which image manifest.json lists (default: first)
     "images": [
        {"platform": "linux/amd64",          required without a base; must match the base's
         "base": {"config": "base/config.json",
                  "layers": [{"mediaType": …, "digest": …, "size": N, "path": "base/blob1"}]},
         "layers": ["layer-a/descriptor.json", …],       outputs of the layer command
         "config": {"Env": {"PATH": "/app/bin:${PATH}"}, "Entrypoint": […], "Cmd": […],
                    "WorkingDir": "/app", "User": "65532", "ExposedPorts": ["8080/tcp"],
                    "Labels": {…}, "StopSignal": "SIGTERM", "Healthcheck": {…}},
         "annotations": {…}}                 manifest annotations
     ]}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    List,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from .archive import ImageFiles, image_files
from .errors import OciError
from .image import ConfigUpdate, Image, Index, Layer, build_image, created_from_epoch
from .layer import DEFAULT_MTIME, Compression, Entry, LayerOptions, expand_tree
from .recipe import BlobRecipe
from .types import Descriptor, Platform

T = TypeVar("T")
D = TypeVar("D")

_LAYER_KEYS = {
    "compression",
    "gzip_level",
    "source_date_epoch",
    "uid",
    "gid",
    "created_by",
    "entries",
}
_ENTRY_KINDS = ("source", "content", "directory", "symlink", "tree")
_ENTRY_OPTIONS = {"mode", "uid", "gid", "digest"}
_ARCHIVE_KEYS = {"tags", "source_date_epoch", "created", "docker_platform", "images"}
_IMAGE_KEYS = {"platform", "base", "layers", "config", "annotations"}
_MODE = re.compile(r"^[0-7]{3,4}$")
_CREATED_BY_PATHS = 5


class SpecError(OciError):
    """A spec file is malformed; the message names the file and the key."""


class _Spec:
    """A JSON object from a spec file, read with type checks that name where a value sits."""

    def __init__(self, document: Any, where: str) -> None:
        if not isinstance(document, dict):
            raise SpecError(f"{where}: expected a JSON object")
        self.document: Dict[str, Any] = document
        self.where = where

    @classmethod
    def load(cls, path: Path) -> _Spec:
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")), str(path))
        except (OSError, ValueError) as error:
            raise SpecError(f"{path}: cannot read it as JSON: {error}") from None

    def check_keys(self, allowed: Collection[str]) -> None:
        unknown = sorted(set(self.document) - set(allowed))
        if unknown:
            raise SpecError(f"{self.where}: unknown keys {unknown}; allowed: {sorted(allowed)}")

    def get(self, key: str, kind: Type[T], default: D) -> Union[T, D]:
        if key not in self.document:
            return default
        value = self.document[key]
        # JSON's true and false arrive as bools, which Python also counts as ints.
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise SpecError(f"{self.where}: `{key}` must be a {kind.__name__}, got {value!r}")
        return value

    def require(self, key: str, kind: Type[T]) -> T:
        if key not in self.document:
            raise SpecError(f"{self.where}: `{key}` is required")
        return self.get(key, kind, kind())

    def child(self, key: str, value: Any) -> _Spec:
        return _Spec(value, f"{self.where}: {key}")


def _converted(where: str, convert: Callable[[], T]) -> T:
    """Run a constructor that validates its input, turning its complaint into a SpecError."""
    try:
        return convert()
    except (ValueError, TypeError, KeyError) as error:
        raise SpecError(f"{where}: {error}") from None


# Layer specs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerSpec:
    """What a layer spec describes: the entries, how to write them, and the history text."""

    entries: Tuple[Entry, ...]
    options: LayerOptions
    created_by: str


def read_layer_spec(spec_path: Path) -> LayerSpec:
    spec = _Spec.load(spec_path)
    spec.check_keys(_LAYER_KEYS)
    algorithm = spec.get("compression", str, "none")
    level = spec.get("gzip_level", int, None)
    compression = _converted(spec.where, lambda: Compression(algorithm, level))
    options = LayerOptions(
        compression=compression,
        mtime=spec.get("source_date_epoch", int, DEFAULT_MTIME),
        uid=spec.get("uid", int, 0),
        gid=spec.get("gid", int, 0),
    )
    raw_entries = spec.require("entries", list)
    entries: List[Entry] = []
    for number, raw in enumerate(raw_entries):
        entries += _layer_entries(spec.child(f"entries[{number}]", raw), spec_path.parent)
    created_by = spec.get("created_by", str, None) or _default_created_by(raw_entries)
    return LayerSpec(tuple(entries), options, created_by)


def _layer_entries(spec: _Spec, base_dir: Path) -> List[Entry]:
    spec.check_keys({"path", *_ENTRY_KINDS, *_ENTRY_OPTIONS})
    path = spec.require("path", str)
    kinds = [kind for kind in _ENTRY_KINDS if kind in spec.document]
    if len(kinds) != 1:
        raise SpecError(f"{spec.where} ({path}): give exactly one of {list(_ENTRY_KINDS)}")
    kind = kinds[0]
    mode = _mode(spec)
    owner = {"uid": spec.get("uid", int, None), "gid": spec.get("gid", int, None)}
    if kind in ("symlink", "tree", "directory") and "digest" in spec.document:
        raise SpecError(f"{spec.where} ({path}): `digest` is for file entries")
    if kind in ("symlink", "tree") and mode is not None:
        raise SpecError(f"{spec.where} ({path}): `mode` is not allowed on a {kind} entry")
    if kind == "source":
        source = base_dir / spec.require("source", str)
        return [Entry.file(path, source, mode=mode, digest=spec.get("digest", str, None), **owner)]
    if kind == "content":
        data = spec.require("content", str).encode("utf-8")
        return [Entry.content(path, data, mode=mode, digest=spec.get("digest", str, None), **owner)]
    if kind == "directory":
        if spec.require("directory", bool) is not True:
            raise SpecError(f"{spec.where} ({path}): `directory` must be true")
        return [Entry.directory(path, mode=mode, **owner)]
    if kind == "symlink":
        return [Entry.symlink(path, spec.require("symlink", str), **owner)]
    return expand_tree(base_dir / spec.require("tree", str), path, **owner)


def _mode(spec: _Spec) -> Optional[int]:
    text = spec.get("mode", str, None)
    if text is None:
        return None
    if not _MODE.match(text):
        raise SpecError(f'{spec.where}: `mode` must be an octal string like "0755", got {text!r}')
    return int(text, 8)


def _default_created_by(raw_entries: Sequence[Any]) -> str:
    """History text from the destinations: what the layer holds, never where it came from."""
    paths = sorted(str(entry.get("path")) for entry in raw_entries if isinstance(entry, dict))
    shown = ", ".join(paths[:_CREATED_BY_PATHS])
    more = len(paths) - _CREATED_BY_PATHS
    return f"layer: {shown}" + (f" (+{more} more)" if more > 0 else "")


# Image specs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSpec:
    """What an image spec describes: the image (or index), its tags, the platform `docker load`
    gets, and the archive's mtime."""

    target: Union[Image, Index]
    tags: Tuple[str, ...]
    docker_platform: Optional[Platform]
    epoch: int

    def files(self) -> ImageFiles:
        return image_files(self.target, self.tags, docker_platform=self.docker_platform)


def read_image_spec(spec_path: Path) -> ImageSpec:
    """The image (or index) an `image` spec describes, its base and layers read as given."""
    spec = _Spec.load(spec_path)
    spec.check_keys(_ARCHIVE_KEYS)
    epoch = spec.get("source_date_epoch", int, DEFAULT_MTIME)
    created = spec.get("created", str, None) or _converted(
        spec.where, lambda: created_from_epoch(epoch)
    )
    tags = _strings(spec, "tags")
    raw_images = spec.require("images", list)
    if not raw_images:
        raise SpecError(f"{spec.where}: `images` must list at least one image")
    images = [
        _image(spec.child(f"images[{number}]", raw), spec_path.parent, created)
        for number, raw in enumerate(raw_images)
    ]
    target: Union[Image, Index] = images[0] if len(images) == 1 else Index(images)
    docker_platform = _platform(spec, "docker_platform")
    return ImageSpec(target, tuple(tags), docker_platform, epoch)


def _strings(spec: _Spec, key: str) -> List[str]:
    values: List[Any] = spec.get(key, list, [])
    if not all(isinstance(value, str) for value in values):
        raise SpecError(f"{spec.where}: `{key}` must be a list of strings")
    return values


def _platform(spec: _Spec, key: str) -> Optional[Platform]:
    text: Optional[str] = spec.get(key, str, None)
    if text is None:
        return None
    platform_text = text
    return _converted(spec.where, lambda: Platform.parse(platform_text))


def _image(spec: _Spec, base_dir: Path, created: str) -> Image:
    spec.check_keys(_IMAGE_KEYS)
    platform = _platform(spec, "platform")
    if "base" in spec.document:
        base = _base_image(spec.child("base", spec.document["base"]), base_dir)
        if platform is not None and platform != base.platform:
            raise SpecError(
                f"{spec.where}: platform {platform} differs from the base's {base.platform}"
            )
    elif platform is None:
        raise SpecError(f"{spec.where}: `platform` is required for an image without a base")
    else:
        base = Image.scratch(platform)
    layers = [
        _new_layer(base_dir / path, f"{spec.where}: layers[{number}]")
        for number, path in enumerate(_strings(spec, "layers"))
    ]
    update = _converted(
        f"{spec.where}: config", lambda: ConfigUpdate.from_json(spec.get("config", dict, {}))
    )
    annotations: Dict[str, Any] = spec.get("annotations", dict, {})
    if not all(isinstance(value, str) for value in annotations.values()):
        raise SpecError(f"{spec.where}: `annotations` must map strings to strings")
    return build_image(base, layers, update, created=created, annotations=annotations)


def _base_image(spec: _Spec, base_dir: Path) -> Image:
    spec.check_keys({"config", "layers"})
    config_path = base_dir / spec.require("config", str)
    try:
        config_bytes = config_path.read_bytes()
    except OSError as error:
        raise SpecError(f"{spec.where}: cannot read {config_path}: {error.strerror}") from None
    blobs = [
        _base_layer(spec.child(f"layers[{number}]", raw), base_dir)
        for number, raw in enumerate(spec.require("layers", list))
    ]
    return Image.from_blobs(config_bytes, blobs)


def _base_layer(spec: _Spec, base_dir: Path) -> Tuple[Descriptor, str]:
    spec.check_keys({"mediaType", "digest", "size", "annotations", "path"})
    descriptor = _converted(spec.where, lambda: Descriptor.from_json(spec.document))
    return descriptor, str(base_dir / spec.require("path", str))


def _new_layer(descriptor_path: Path, where: str) -> Layer:
    document = _Spec.load(descriptor_path)
    if "recipe" in document.document:
        recipe: Optional[BlobRecipe] = _converted(
            where,
            lambda: BlobRecipe.from_json(
                document.document["recipe"], descriptor_path.parent, f"{descriptor_path}: recipe"
            ),
        )
        path = str(descriptor_path)
    elif "blob" in document.document:
        recipe, path = None, str(descriptor_path.parent / document.require("blob", str))
    else:
        raise SpecError(f"{where}: {descriptor_path} has no blob (written with --discard-blob?)")
    return _converted(
        where,
        lambda: Layer(
            Descriptor.from_json(document.document),
            document.require("diffID", str),
            path,
            created_by=document.get("createdBy", str, ""),
            recipe=recipe,
        ),
    )
