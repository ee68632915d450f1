"""The command line that sandboxed build processes run: `python -m <this package> COMMAND`.

    layer --spec SPEC.json --output-dir DIR [--discard-blob | --recipe]
    image --spec SPEC.json [--output ARCHIVE.tar | --output -] [--metadata METADATA.json]
    lock-base --image REGISTRY/REPOSITORY:TAG --platform linux/amd64 [--platform P ...]
              [--insecure-registry HOST[:PORT] ...] [LIMITS] --output LOCK.json
    pull-blob --repository REGISTRY/REPOSITORY --digest sha256:… --size N --output FILE
              [--insecure-registry HOST[:PORT] ...] [LIMITS]
    push --spec SPEC.json --ref REGISTRY/REPOSITORY[:TAG] [--ref ...]
         [--attach MEDIA_TYPE SUBJECT FILE ...]
         [--mount-from REGISTRY/REPOSITORY ...] [--insecure-registry HOST[:PORT] ...] [LIMITS]
    missing-layers --spec SPEC.json --repository REGISTRY/REPOSITORY
                   [--mount-from REGISTRY/REPOSITORY ...] [--insecure-registry HOST[:PORT] ...]
                   [LIMITS]
    compare --first DIR --second DIR
    check-base --lock LOCK.json [--insecure-registry HOST[:PORT] ...] [LIMITS]
    export --into DIR [--layout LAYOUT --owner TARGET [--spec SPEC.json]] [--remove OLD ...]
           [--remove-sbom-named-by METADATA] PATH [PATH ...]

`lock-base` resolves a registry base's tag and writes its lock (the format is in `base.py`).
`pull-blob` downloads one blob by digest; FILE appears only once the bytes matched the digest.
`compare` prints, as a JSON list of {"path", "detail"}, every file of two output directories
whose bytes differ, and where first: tar entry and header field, JSON field, or the manifest,
config or layer of an image archive (`compare.py`).
`push` pushes the image of SPEC (as `image` would write it), blobs as they are (so the digest is
kept), skipping blobs the registry has and mounting those another repository of it has (a
layer file may then be absent), and prints per repository the bytes uploaded and skipped. Each
--attach then attaches FILE, a document of MEDIA_TYPE (`application/spdx+json`,
`application/vnd.in-toto+json`) about the manifest SUBJECT (the image's digest or one of its
platforms' manifests), as an OCI 1.1 referrer, with the referrers tag `sha256-<hex>` where the
registry has no referrers API (`referrers.py`); a second push sends nothing again.
`missing-layers` prints, as a JSON list of digests, the layers of SPEC's image that neither the
repository nor a --mount-from repository has (HEAD requests): the only layer files `push` needs.
`check-base` asks the registry, with HEAD, whether it still has every digest a base lock pins, and
prints the report of the `debian check` command (`types.check_report`).
`export` places the image of SPEC in the OCI image layout DIR/LAYOUT that all images share, as
TARGET's (`layout.py`: its layer blobs hardlinked, each blob written only if absent; TARGET's
earlier entries replaced; without --spec, TARGET's image leaves the layout), then each PATH
(relative to the working directory) at the same relative path under DIR, whole or not at all
and the last one last (`export.py`), deletes DIR/OLD and the SBOM files that DIR/METADATA (the
image's metadata JSON as an earlier export left it) names and no PATH is, and prints what it
wrote and what was already there as {"written": [...], "unchanged": [...]}.
All registry commands read registry credentials from `$DOCKER_CONFIG/config.json` (else
`~/.docker/config.json`) and reach loopback registries, and those given with --insecure-registry,
over plain HTTP. LIMITS bound each registry operation (`limits.py`; `--help` gives the
defaults): [--connect-timeout SECONDS] [--read-timeout SECONDS] [--attempts N]
[--total-timeout SECONDS].


The specs the `layer` and `image` commands read (and `export --spec`) are described in `spec.py`.
On a bad spec, input or output the exit status is 2 and stderr has one `error: …` line naming the
problem; a half-written blob or archive is removed, and the JSON result (descriptor.json,
metadata) is written last, only on success. All JSON written is canonical (sorted keys).

Layer output, in DIR: the blob `layer.tar` or `layer.tar.gz` (not written with --discard-blob,
which sends it to /dev/null to measure speed, nor with --recipe, which keeps an uncompressed
layer as a recipe in the descriptor instead of `blob`: see `recipe.py`), and `descriptor.json`:
    {"mediaType": …, "digest": "sha256:…", "size": N, "diffID": "sha256:…",
     "compression": {"algorithm": "gzip", "level": 6, "zlib": "1.2.13"} | {"algorithm": "none"},
     "createdBy": "…", "blob": "layer.tar",
     "entries": [{"path": "app", "type": "directory", "mode": "0755", "uid": 0, "gid": 0},
                 {"path": "app/main.py", "type": "file", …, "size": N},
                 {"path": "usr/bin/python", "type": "symlink", …, "target": "…"}, …]}
                                             every member, parents included, in tar order
Image output: the archive (if --output is given, `-` streaming it to stdout; without it no layer
blob is read), and METADATA.json (default: ARCHIVE.tar.json; needed with `--output -`):
    {"mediaType": …, "digest": "sha256:…", "size": N,       the manifest or index: what to push
     "tags": […as given], "docker": {"imageID": "sha256:…", "platform": "linux/amd64"},
     "images": [{"platform": …, "manifest": {descriptor}, "config": {descriptor},
                 "imageID": "sha256:…", "layers": [{descriptor…, "diffID": …}]}]}
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Tuple

from .archive import write_archive
from .errors import OciError
from .export import LayoutImage, export_files, sbom_named_by
from .image import created_from_epoch, image_metadata
from .layer import Entry, write_layer_directory
from .layout import layout_entries
from .limits import REGISTRY_LIMITS, add_limit_arguments, limits_from
from .name import Reference, Repository
from .spec import read_image_spec, read_layer_spec
from .types import Descriptor, canonical_json, check_report

# The registry client (`remote`, `push`, `referrers`, `base`: ssl, sockets, http.client) and
# `compare` are imported by the commands that use them, so that the steps that run `layer`,
# `image` and `export` (nearly all) do not compile and import them: ~40 ms a step from sources.
if TYPE_CHECKING:
    from .remote import RegistryClient

# Fetching needs only a blob's digest and size; its media type is left out of the command line
# so that one blob has one cache entry whatever manifests list it as.
_ANY_BLOB = "application/octet-stream"


class _FlagsError(OciError):
    """Flags that argparse cannot check together; reported the way argparse reports its own."""


def run_layer(args: argparse.Namespace) -> None:
    spec = read_layer_spec(args.spec)
    if args.discard_blob and args.recipe:
        raise _FlagsError("layer: --discard-blob and --recipe exclude each other")
    write_layer_directory(
        spec.entries,
        args.output_dir,
        spec.options,
        spec.created_by,
        discard_blob=args.discard_blob,
        recipe=args.recipe,
    )


def run_image(args: argparse.Namespace) -> None:
    """Write the archive (unless there is no --output: then no blob is read) and its metadata."""
    to_stdout = args.output == Path("-")
    if args.metadata is None and (args.output is None or to_stdout):
        raise _FlagsError("image: give --metadata, and --output if an archive is wanted")
    metadata_path = args.metadata or args.output.with_name(args.output.name + ".json")
    spec = read_image_spec(args.spec)
    if args.output is None:
        docker_image = spec.files().docker_image
    else:
        docker_image = write_archive(
            sys.stdout.buffer if to_stdout else args.output,
            spec.target,
            spec.tags,
            docker_platform=spec.docker_platform,
            mtime=spec.epoch,
        )
    metadata_path.write_bytes(canonical_json(image_metadata(spec.target, spec.tags, docker_image)))


def run_lock_base(args: argparse.Namespace) -> None:
    from .base import lock_base

    with _client(args) as client:
        lock = lock_base(client, args.image, args.platform)
    _write_replacing(args.output, lock.dumps())


def run_pull_blob(args: argparse.Namespace) -> None:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with _client(args) as client:
        descriptor = Descriptor(_ANY_BLOB, args.digest, args.size)
        client.fetch_blob(Repository.parse(args.repository), descriptor, args.output)


def run_check_base(args: argparse.Namespace) -> None:
    from .base import BaseLock, check_lock

    lock = BaseLock.loads(args.lock.read_bytes(), str(args.lock))
    with _client(args) as client:
        checked, findings = check_lock(client, lock)
    sys.stdout.buffer.write(check_report(checked, findings) + b"\n")


def run_push(args: argparse.Namespace) -> None:
    """Push the image (or index) of a spec under each reference, blob bytes streamed from the
    layer files as they are, so the pushed digest is the built one; a layer file may be absent
    if the registry has the blob. Print, per repository, what was uploaded and what the
    registry already had."""
    from .push import local_blobs
    from .referrers import artifact, attach, subject_of

    spec = read_image_spec(args.spec)
    target = spec.target
    blobs = local_blobs(target)
    created = created_from_epoch(spec.epoch)
    artifacts = [
        artifact(
            Path(path),
            media_type,
            subject_of(target, subject),
            title=Path(path).name,
            created=created,
        )
        for media_type, subject, path in args.attach
    ]
    mount_from = [Repository.parse(repository) for repository in args.mount_from]
    parsed = [Reference.parse(reference) for reference in args.ref]
    with _client(args) as client:
        for repository in sorted({ref.repository for ref in parsed}, key=str):
            tags = [ref.tag for ref in parsed if ref.repository == repository and ref.tag]
            stats = client.push(
                repository, target.descriptor, blobs, tags=tags, mount_from=mount_from
            )
            print(f"pushed {repository}@{target.digest}: {stats}")
            if artifacts:
                attached = attach(client, repository, artifacts, mount_from=mount_from)
                print(f"referrers of {repository}@{target.digest}: {attached}")


def run_missing_layers(args: argparse.Namespace) -> None:
    """Print, as a JSON list of digests, the layers of a spec's image that a repository lacks:
    what a push of it must have the bytes of."""
    from .push import missing_layers

    target = read_image_spec(args.spec).target
    with _client(args) as client:
        mount_from = [Repository.parse(repository) for repository in args.mount_from]
        missing = missing_layers(client, Repository.parse(args.repository), target, mount_from)
    print(json.dumps(sorted(descriptor.digest for descriptor in missing)))


def run_compare(args: argparse.Namespace) -> None:
    from .compare import compare_directories

    differences = compare_directories(args.first, args.second)
    print(json.dumps([difference.to_json() for difference in differences], indent=1))


def run_export(args: argparse.Namespace) -> None:
    if (args.layout is None) != (args.owner is None) or (args.spec and not args.layout):
        raise _FlagsError("export: --layout and --owner go together, and --spec needs them")
    layout = None
    if args.layout is not None:
        blobs: Tuple[Entry, ...] = ()
        entries: Tuple[Mapping[str, Any], ...] = ()
        if args.spec is not None:
            spec = read_image_spec(args.spec)
            blobs = spec.files().blobs
            entries = tuple(layout_entries(spec.target, spec.tags, args.owner))
        layout = LayoutImage(args.layout, args.owner, blobs, entries)
    files = [(Path(path), path) for path in args.paths]
    remove = list(args.remove)
    if args.remove_sbom_named_by:
        earlier = sbom_named_by(args.into, args.remove_sbom_named_by)
        remove += [path for path in earlier if path not in args.paths and path not in remove]
    exported = export_files(args.into, files, layout, remove)
    print(json.dumps({"written": exported.written, "unchanged": exported.unchanged}))


def _client(args: argparse.Namespace) -> RegistryClient:
    """A client for the registry commands' --insecure-registry and LIMITS flags."""
    from .remote import RegistryClient

    return RegistryClient(insecure_registries=args.insecure_registry, limits=limits_from(args))


def _write_replacing(path: Path, data: bytes) -> None:
    """Write `path` beside itself, then rename: a failed run leaves the old file as it was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def _parser() -> argparse.ArgumentParser:
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
    layer.add_argument(
        "--recipe",
        action="store_true",
        help="keep the (uncompressed) blob as a recipe naming its big files, not as bytes",
    )
    layer.set_defaults(run=run_layer)
    image = commands.add_parser("image", help="write an image archive and its metadata")
    image.add_argument("--spec", type=Path, required=True)
    image.add_argument(
        "--output", type=Path, help="the archive (`-`: stdout); without it, metadata only"
    )
    image.add_argument("--metadata", type=Path, help="default: the archive path + .json")
    image.set_defaults(run=run_image)
    lock = commands.add_parser("lock-base", help="resolve a registry base into a lock")
    lock.add_argument("--image", required=True, help="registry/repository:tag (or @sha256:…)")
    lock.add_argument("--platform", action="append", required=True, help="repeatable")
    lock.add_argument("--output", type=Path, required=True)
    lock.set_defaults(run=run_lock_base)
    pull = commands.add_parser("pull-blob", help="download one blob, verified by its digest")
    pull.add_argument("--repository", required=True, help="registry/repository")
    pull.add_argument("--digest", required=True)
    pull.add_argument("--size", type=int, required=True)
    pull.add_argument("--output", type=Path, required=True)
    pull.set_defaults(run=run_pull_blob)
    push = commands.add_parser("push", help="push a spec's image, digest preserved")
    push.add_argument("--spec", type=Path, required=True, help="an image spec")
    push.add_argument(
        "--ref", action="append", required=True, help="registry/repository[:tag]; repeatable"
    )
    push.add_argument(
        "--attach",
        nargs=3,
        action="append",
        default=[],
        metavar=("MEDIA_TYPE", "SUBJECT", "FILE"),
        help="a document about the manifest SUBJECT to attach as a referrer; repeatable",
    )
    push.set_defaults(run=run_push)
    missing = commands.add_parser("missing-layers", help="list the layers a repository lacks")
    missing.add_argument("--spec", type=Path, required=True, help="an image spec")
    missing.add_argument("--repository", required=True, help="registry/repository")
    missing.set_defaults(run=run_missing_layers)
    compare = commands.add_parser("compare", help="explain how two output directories differ")
    compare.add_argument("--first", type=Path, required=True)
    compare.add_argument("--second", type=Path, required=True)
    compare.set_defaults(run=run_compare)
    check = commands.add_parser("check-base", help="ask whether a base lock's digests are served")
    check.add_argument("--lock", type=Path, required=True)
    check.set_defaults(run=run_check_base)
    export = commands.add_parser("export", help="place finished files in a directory, whole")
    export.add_argument("--into", type=Path, required=True)
    export.add_argument("--layout", help="the directory under --into of the shared OCI layout")
    export.add_argument("--owner", help="the target whose image the layout gets (or loses)")
    export.add_argument("--spec", type=Path, help="an image spec, as the image command takes")
    export.add_argument(
        "--remove", action="append", default=[], help="a path under --into to delete; repeatable"
    )
    export.add_argument(
        "--remove-sbom-named-by",
        metavar="METADATA",
        help="an image's metadata JSON under --into: the SBOM files it names that no PATH is go",
    )
    export.add_argument("paths", nargs="+", metavar="PATH", help="the last one is placed last")
    export.set_defaults(run=run_export)
    for mounting in (push, missing):
        mounting.add_argument(
            "--mount-from",
            action="append",
            default=[],
            metavar="REGISTRY/REPOSITORY",
            help="a repository of the same registry to mount layers from; repeatable",
        )
    for registry_command in (lock, pull, push, missing, check):
        registry_command.add_argument(
            "--insecure-registry",
            action="append",
            default=[],
            metavar="HOST[:PORT]",
            help="may be reached over plain HTTP (loopback always may); repeatable",
        )
        add_limit_arguments(registry_command, REGISTRY_LIMITS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except _FlagsError as error:
        parser.error(str(error))
    except (OciError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
