"""The command line that sandboxed build processes run: `python -m <this package> COMMAND`.

    layer --spec SPEC.json --output-dir DIR [--discard-blob]
    image --spec SPEC.json [--output ARCHIVE.tar] [--metadata METADATA.json]
    lock-base --image REGISTRY/REPOSITORY:TAG --platform linux/amd64 [--platform P ...]
              [--insecure-registry HOST[:PORT] ...] [LIMITS] --output LOCK.json
    pull-blob --repository REGISTRY/REPOSITORY --digest sha256:… --size N --output FILE
              [--insecure-registry HOST[:PORT] ...] [LIMITS]
    push --archive ARCHIVE.tar --ref REGISTRY/REPOSITORY[:TAG] [--ref ...]
         [--insecure-registry HOST[:PORT] ...] [LIMITS]
    compare --first DIR --second DIR
    check-base --lock LOCK.json [--insecure-registry HOST[:PORT] ...] [LIMITS]
    export --into DIR [--layout LAYOUT --spec SPEC.json] [--remove OLD ...] PATH [PATH ...]

`lock-base` resolves a registry base's tag and writes its lock (the format is in `base.py`).
`pull-blob` downloads one blob by digest; FILE appears only once the bytes matched the digest.
`compare` prints, as a JSON list of {"path", "detail"}, every file of two output directories
whose bytes differ, and where first: tar entry and header field, JSON field, or the manifest,
config or layer of an image archive (`compare.py`).
`push` pushes what an `image` archive holds, blobs as they are (so the digest is kept), skipping
blobs the registry has, and prints per repository the bytes uploaded and skipped.
`check-base` asks the registry, with HEAD, whether it still has every digest a base lock pins, and
prints the report of the `debian check` command (`types.check_report`).
`export` places the image of SPEC as an OCI image layout at DIR/LAYOUT (its layer blobs
hardlinked, each blob written only if absent), then each PATH (relative to the working
directory) at the same relative path under DIR, whole or not at all and the last one last
(`export.py`), deletes DIR/OLD, and prints what it wrote and what was already there as
{"written": [...], "unchanged": [...]}.
All registry commands read registry credentials from `$DOCKER_CONFIG/config.json` (else
`~/.docker/config.json`) and reach loopback registries, and those given with --insecure-registry,
over plain HTTP. LIMITS bound each registry operation (`connection.py`; `--help` gives the
defaults): [--connect-timeout SECONDS] [--read-timeout SECONDS] [--attempts N]
[--total-timeout SECONDS].

Relative paths inside a spec are relative to the spec file's directory. Unknown keys are refused.
On a bad spec, input or output the exit status is 2 and stderr has one `error: …` line naming the
problem; a half-written blob or archive is removed, and the JSON result (descriptor.json,
metadata) is written last, only on success. All JSON written is canonical (sorted keys).

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
Layer output, in DIR: the blob `layer.tar` or `layer.tar.gz` (not written with --discard-blob,
which sends it to /dev/null to measure speed), and `descriptor.json`:
    {"mediaType": …, "digest": "sha256:…", "size": N, "diffID": "sha256:…",
     "compression": {"algorithm": "gzip", "level": 6, "zlib": "1.2.13"} | {"algorithm": "none"},
     "createdBy": "…", "blob": "layer.tar",
     "entries": [{"path": "app", "type": "directory", "mode": "0755", "uid": 0, "gid": 0},
                 {"path": "app/main.py", "type": "file", …, "size": N},
                 {"path": "usr/bin/python", "type": "symlink", …, "target": "…"}, …]}
                                             every member, parents included, in tar order

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
Image output: the archive (if --output is given; without it no layer blob is read), and
METADATA.json (default: ARCHIVE.tar.json):
    {"mediaType": …, "digest": "sha256:…", "size": N,       the manifest or index: what to push
     "tags": […as given], "docker": {"imageID": "sha256:…", "platform": "linux/amd64"},
     "images": [{"platform": …, "manifest": {descriptor}, "config": {descriptor},
                 "imageID": "sha256:…", "layers": [{descriptor…, "diffID": …}]}]}
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import (
    Any,
    Callable,
    Collection,
    Dict,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    TypeVar,
    Union,
)

from .archive import ArchiveError, ImageFiles, image_files, write_archive
from .base import BaseLock, check_lock, lock_base
from .compare import compare_directories
from .connection import NetworkLimits, add_limit_arguments, limits_from
from .errors import OciError
from .export import export_files
from .image import (
    ConfigUpdate,
    Image,
    Index,
    Layer,
    build_image,
    created_from_epoch,
)
from .layer import (
    DEFAULT_MTIME,
    Compression,
    Entry,
    LayerOptions,
    expand_tree,
    write_layer_directory,
)
from .name import Reference, Repository
from .remote import RegistryClient
from .transport import REGISTRY_LIMITS
from .types import Descriptor, Platform, canonical_json, check_report, digest_hex

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
# Fetching needs only a blob's digest and size; its media type is left out of the command line
# so that one blob has one cache entry whatever manifests list it as.
_ANY_BLOB = "application/octet-stream"


class SpecError(OciError):
    """A spec file is malformed; the message names the file and the key."""


# Reading specs ----------------------------------------------------------------------------------


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


# layer ------------------------------------------------------------------------------------------


def run_layer(spec_path: Path, output_dir: Path, discard_blob: bool) -> Dict[str, Any]:
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

    return write_layer_directory(
        entries, output_dir, options, created_by, discard_blob=discard_blob
    )


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


# image ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ImageSpec:
    """What an image spec describes: the image (or index), its tags, the platform `docker load`
    gets, and the archive's mtime."""

    target: Union[Image, Index]
    images: Tuple[Image, ...]
    tags: Tuple[str, ...]
    docker_platform: Optional[Platform]
    epoch: int

    def files(self) -> ImageFiles:
        return image_files(self.target, self.tags, docker_platform=self.docker_platform)


def _load_image_spec(spec_path: Path) -> _ImageSpec:
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
    return _ImageSpec(target, tuple(images), tuple(tags), docker_platform, epoch)


def run_image(spec_path: Path, output: Optional[Path], metadata_path: Path) -> Dict[str, Any]:
    """Write the archive (unless `output` is None: then no blob is read) and its metadata."""
    image = _load_image_spec(spec_path)
    if output is None:
        docker_image = image.files().docker_image
    else:
        docker_image = write_archive(
            output,
            image.target,
            image.tags,
            docker_platform=image.docker_platform,
            mtime=image.epoch,
        )
    metadata = {
        **image.target.descriptor.to_json(),
        "tags": list(image.tags),
        "docker": {"imageID": docker_image.image_id, "platform": str(docker_image.platform)},
        "images": [_image_metadata(platform_image) for platform_image in image.images],
    }
    metadata_path.write_bytes(canonical_json(metadata))
    return metadata


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
    if "blob" not in document.document:
        raise SpecError(f"{where}: {descriptor_path} has no blob (written with --discard-blob?)")
    return _converted(
        where,
        lambda: Layer(
            Descriptor.from_json(document.document),
            document.require("diffID", str),
            str(descriptor_path.parent / document.require("blob", str)),
            created_by=document.get("createdBy", str, ""),
        ),
    )


def _image_metadata(image: Image) -> Mapping[str, Any]:
    return {
        "platform": str(image.platform),
        "manifest": image.descriptor.to_json(),
        "config": image.config_descriptor.to_json(),
        "imageID": image.image_id,
        "layers": [
            {**layer.descriptor.to_json(), "diffID": layer.diff_id} for layer in image.layers
        ],
    }


# lock-base, pull-blob ---------------------------------------------------------------------------


def run_lock_base(
    image: str,
    platforms: Sequence[str],
    insecure_registries: Sequence[str],
    limits: NetworkLimits,
    output: Path,
) -> None:
    with RegistryClient(insecure_registries=insecure_registries, limits=limits) as client:
        lock = lock_base(client, image, platforms)
    _write_replacing(output, lock.dumps())


def run_pull_blob(
    repository: str,
    digest: str,
    size: int,
    insecure_registries: Sequence[str],
    limits: NetworkLimits,
    output: Path,
) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with RegistryClient(insecure_registries=insecure_registries, limits=limits) as client:
        client.fetch_blob(Repository.parse(repository), Descriptor(_ANY_BLOB, digest, size), output)


def run_check_base(
    lock_path: Path, insecure_registries: Sequence[str], limits: NetworkLimits
) -> None:
    lock = BaseLock.loads(lock_path.read_bytes(), str(lock_path))
    with RegistryClient(insecure_registries=insecure_registries, limits=limits) as client:
        checked, findings = check_lock(client, lock)
    sys.stdout.buffer.write(check_report(checked, findings) + b"\n")


def run_push(
    archive: Path,
    references: Sequence[str],
    insecure_registries: Sequence[str],
    limits: NetworkLimits,
) -> None:
    """Push the image (or index) an archive holds under each reference, blob bytes streamed from
    the archive's OCI layout as they are, so the pushed digest is the built one; print, per
    repository, what was uploaded and what the registry already had."""
    parsed = [Reference.parse(reference) for reference in references]
    with tempfile.TemporaryDirectory(prefix="push-") as scratch:
        root, blobs = _unpack_layout_blobs(archive, Path(scratch))
        with RegistryClient(insecure_registries=insecure_registries, limits=limits) as client:
            for repository in sorted({ref.repository for ref in parsed}, key=str):
                tags = [ref.tag for ref in parsed if ref.repository == repository and ref.tag]
                stats = client.push(repository, root, blobs, tags=tags)
                print(f"pushed {repository}@{root.digest}: {stats}")


def _unpack_layout_blobs(archive: Path, scratch: Path) -> Tuple[Descriptor, Dict[str, Path]]:
    """The root descriptor of an archive's OCI layout (`index.json`), and its blobs copied out to
    `scratch` in bounded memory, by digest."""
    blobs: Dict[str, Path] = {}
    root: Optional[Descriptor] = None
    with tarfile.open(archive) as layout:
        for member in layout:
            if not member.isfile():
                continue
            source = layout.extractfile(member)
            assert source is not None
            if member.name == "index.json":
                manifests = json.loads(source.read()).get("manifests") or []
                if not manifests:
                    raise ArchiveError(f"{archive}: index.json lists no image")
                root = Descriptor.from_json({**manifests[0], "annotations": {}})
            elif member.name.startswith("blobs/sha256/"):
                digest = "sha256:" + member.name.rsplit("/", 1)[1]
                target = scratch / digest_hex(digest)
                with open(target, "wb") as copy:
                    shutil.copyfileobj(source, copy, 1 << 20)
                blobs[digest] = target
    if root is None:
        raise ArchiveError(f"{archive}: no index.json; not an image archive written by `image`")
    return root, blobs


def _write_replacing(path: Path, data: bytes) -> None:
    """Write `path` beside itself, then rename: a failed run leaves the old file as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


# Entry point ------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}", description="Build OCI layers and image archives."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    layer = commands.add_parser("layer", help="write a layer blob and its descriptor.json")
    layer.add_argument("--spec", type=Path, required=True)
    layer.add_argument("--output-dir", type=Path, required=True)
    layer.add_argument(
        "--discard-blob", action="store_true", help="send the blob to /dev/null (benchmarks)"
    )
    image = commands.add_parser("image", help="write an image archive and its metadata")
    image.add_argument("--spec", type=Path, required=True)
    image.add_argument("--output", type=Path, help="the archive; without it, metadata only")
    image.add_argument("--metadata", type=Path, help="default: the archive path + .json")
    lock = commands.add_parser("lock-base", help="resolve a registry base into a lock")
    lock.add_argument("--image", required=True, help="registry/repository:tag (or @sha256:…)")
    lock.add_argument("--platform", action="append", required=True, help="repeatable")
    lock.add_argument("--output", type=Path, required=True)
    pull = commands.add_parser("pull-blob", help="download one blob, verified by its digest")
    pull.add_argument("--repository", required=True, help="registry/repository")
    pull.add_argument("--digest", required=True)
    pull.add_argument("--size", type=int, required=True)
    pull.add_argument("--output", type=Path, required=True)
    push = commands.add_parser("push", help="push an image archive, digest preserved")
    push.add_argument("--archive", type=Path, required=True, help="written by the image command")
    push.add_argument(
        "--ref", action="append", required=True, help="registry/repository[:tag]; repeatable"
    )
    compare = commands.add_parser("compare", help="explain how two output directories differ")
    compare.add_argument("--first", type=Path, required=True)
    compare.add_argument("--second", type=Path, required=True)
    check = commands.add_parser("check-base", help="ask whether a base lock's digests are served")
    check.add_argument("--lock", type=Path, required=True)
    export = commands.add_parser("export", help="place finished files in a directory, whole")
    export.add_argument("--into", type=Path, required=True)
    export.add_argument("--layout", help="a directory under --into for the image of --spec")
    export.add_argument("--spec", type=Path, help="an image spec, as the image command takes")
    export.add_argument(
        "--remove", action="append", default=[], help="a path under --into to delete; repeatable"
    )
    export.add_argument("paths", nargs="+", metavar="PATH", help="the last one is placed last")
    for registry_command in (lock, pull, push, check):
        registry_command.add_argument(
            "--insecure-registry",
            action="append",
            default=[],
            metavar="HOST[:PORT]",
            help="may be reached over plain HTTP (loopback always may); repeatable",
        )
        add_limit_arguments(registry_command, REGISTRY_LIMITS)
    args = parser.parse_args(argv)
    try:
        if args.command == "layer":
            run_layer(args.spec, args.output_dir, args.discard_blob)
        elif args.command == "image":
            if args.metadata is None and args.output is None:
                parser.error("image: give --output, --metadata or both")
            metadata = args.metadata or args.output.with_name(args.output.name + ".json")
            run_image(args.spec, args.output, metadata)
        elif args.command == "lock-base":
            limits = limits_from(args)
            run_lock_base(args.image, args.platform, args.insecure_registry, limits, args.output)
        elif args.command == "push":
            run_push(args.archive, args.ref, args.insecure_registry, limits_from(args))
        elif args.command == "check-base":
            run_check_base(args.lock, args.insecure_registry, limits_from(args))
        elif args.command == "compare":
            differences = compare_directories(args.first, args.second)
            print(json.dumps([difference.to_json() for difference in differences], indent=1))
        elif args.command == "export":
            layout = None
            if (args.layout is None) != (args.spec is None):
                parser.error("export: --layout and --spec go together")
            if args.layout is not None:
                layout = (args.layout, _load_image_spec(args.spec).files())
            files = [(Path(path), path) for path in args.paths]
            exported = export_files(args.into, files, layout, args.remove)
            print(json.dumps({"written": exported.written, "unchanged": exported.unchanged}))
        else:
            limits = limits_from(args)
            run_pull_blob(
                args.repository, args.digest, args.size, args.insecure_registry, limits, args.output
            )
    except (OciError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
