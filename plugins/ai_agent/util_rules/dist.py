"""Placing images in `dist/`: all of them in one OCI image layout, `dist/oci/`, each with its
metadata JSON, SBOM and provenance (and archive, if asked for) at its `output_path`.

Pants' `package` goal would write a package's files into `dist/` itself, truncating and
rewriting them in place: a kill midway leaves a torn archive beside new metadata, and every run
rewrites gigabytes that did not change. So image packages hand it nothing to write
(`exported_package`); the OCI core's `export` command places the files, whole or not at all, the
metadata last, hardlinked from Pants' store where the filesystem allows. It runs on every
`package` (its work is in `dist/`, which no cache holds) and writes only what changed. The
image's SBOM and provenance (`sbom.py`) are placed the same way, before the metadata.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

from pants.base.build_root import BuildRoot
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, OutputPathField
from pants.core.util_rules.distdir import DistDir
from pants.engine.addresses import Address
from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import AllTargets, InvalidFieldException
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.oci.layout import ref_name
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    AgentConfigSourceField,
    BaseImageLockfileField,
    agent_image_names,
    base_image_names,
)
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.util_rules.image import (
    IMAGE_SPEC,
    CompleteImage,
    DescribedImage,
    ImageArchive,
    ImageArchiveRequest,
)
from ai_agent.util_rules.sbom import Sbom

# The OCI image layout under `dist/` that holds every image `package` writes.
LAYOUT_DIR = "oci"


def layout_metadata(names: Sequence[str]) -> Dict[str, Any]:
    """Where the metadata says the image is in the layout: its directory (relative to `dist/`)
    and the names it has there (`skopeo inspect oci:dist/oci:<name>`)."""
    return {"directory": LAYOUT_DIR, "refNames": [ref_name(name) for name in names]}


def _earlier_layout_path(output_path: str) -> str:
    """Where earlier versions of the plugin placed the image's own layout: beside the archive,
    named like it with `.oci` for `.tar`. An export removes it."""
    stem = output_path[: -len(".tar")] if output_path.endswith(".tar") else output_path
    return f"{stem}.oci"


@dataclass(frozen=True)
class DistExportRequest:
    """An image placed in `dist/`: its OCI layout (from `request`), then `paths` of `digest`
    (the archive, if any, the SBOM and provenance, then the metadata JSON, placed last);
    `remove` what is not wanted any more (an archive from when archives were on), and the SBOM
    files the earlier metadata names that `paths` lack."""

    request: ImageArchiveRequest
    digest: Digest
    paths: Tuple[str, ...]
    remove: Tuple[str, ...] = ()


@dataclass(frozen=True)
class DistExport:
    """The `dist/` paths written, and those that already held the same file."""

    written: Tuple[str, ...]
    unchanged: Tuple[str, ...]


@rule(desc="Placing an image in dist/", level=LogLevel.DEBUG)
async def export_to_dist(
    export: DistExportRequest,
    builder: ImageBuilder,
    dist_dir: DistDir,
    build_root: BuildRoot,
    subsystem: AiAgentSubsystem,
) -> DistExport:
    request = export.request
    if subsystem.layouts:
        described = await Get(DescribedImage, ImageArchiveRequest, request)
        complete = await Get(CompleteImage, DescribedImage, described)
        inputs = await Get(Digest, MergeDigests([complete.digest, export.digest]))
    else:
        # No blob is read: only the files of `export` are placed, and the image leaves the
        # layout if an earlier package put it there.
        inputs = export.digest
    step = BuildStep(
        builder.oci_export(
            into=str(build_root.pathlib_path / dist_dir.relpath),
            layout=LAYOUT_DIR,
            owner=request.owner,
            spec=IMAGE_SPEC if subsystem.layouts else None,
            paths=export.paths,
            remove=(*export.remove, _earlier_layout_path(request.output_path)),
            # The SBOM files that the metadata as an earlier package left it names and this one
            # lacks go: the image went from one platform to several, or back.
            remove_sbom_named_by=export.paths[-1],
            inputs=inputs,
            description=f"Placing {request.owner}'s image in {dist_dir.relpath}/",
        ),
        owner=request.owner,
    )
    output = await Get(BuildStepOutput, BuildStep, step)
    result = output.stdout_json()
    return DistExport(tuple(result["written"]), tuple(result["unchanged"]))


async def exported_package(
    request: ImageArchiveRequest,
    metadata_file: bytes,
    summary: str,
    dist_dir: DistDir,
    subsystem: AiAgentSubsystem,
    sbom: Sbom,
) -> BuiltPackage:
    """A package placed in `dist/` by the `export` step: the image in `dist/oci/` if
    `[ai-agents].layouts`, its archive if `[ai-agents].archives`, its SBOM and provenance
    (`sbom`), and the metadata JSON (`metadata_file`) last. Pants is given nothing to write,
    only what to print."""
    metadata_path = f"{request.output_path}.json"
    created = await Get(Digest, CreateDigest([FileContent(metadata_path, metadata_file)]))
    metadata = await Get(Digest, MergeDigests([sbom.digest, created]))
    paths: Tuple[str, ...] = (*sbom.paths, metadata_path)
    remove: Tuple[str, ...] = (request.output_path,)
    if subsystem.archives:
        archive = await Get(ImageArchive, ImageArchiveRequest, request)
        archive_only = await Get(
            Digest, DigestSubset(archive.digest, PathGlobs([archive.archive_path]))
        )
        metadata = await Get(Digest, MergeDigests([archive_only, metadata]))
        paths, remove = (archive.archive_path, *paths), ()
    export = await Get(DistExport, DistExportRequest(request, metadata, paths, remove))
    names = ", ".join(ref_name(tag) for tag in request.tags)

    def shown(path: str) -> str:
        return f"{dist_dir.relpath / path}" + (f" as {names}" if path == LAYOUT_DIR else "")

    lines = [f"Wrote {shown(path)}" for path in export.written] + [
        f"Unchanged {shown(path)}" for path in export.unchanged
    ]
    return BuiltPackage(EMPTY_DIGEST, (BuiltPackageArtifact(None, (*lines, summary)),))


class OutputPathProblem(InvalidFieldException):
    """An image target's `output_path` leaves `dist/` or is another target's too."""


@dataclass(frozen=True)
class ArchiveOutputPaths:
    """Where in `dist/` each image target's archive goes (`output_path` or its default)."""

    owners: FrozenDict[str, Tuple[Address, ...]]


@rule(desc="Listing where image archives go", level=LogLevel.DEBUG)
async def archive_output_paths(all_targets: AllTargets) -> ArchiveOutputPaths:
    owners: Dict[str, List[Address]] = {}
    for target in all_targets:
        if target.has_field(OutputPathField) and (
            target.has_field(AgentConfigSourceField) or target.has_field(BaseImageLockfileField)
        ):
            path = target[OutputPathField].value_or_default(file_ending="tar")
            owners.setdefault(posixpath.normpath(path), []).append(target.address)
    return ArchiveOutputPaths(
        FrozenDict((path, tuple(sorted(addresses))) for path, addresses in owners.items())
    )


async def checked_output_path(address: Address, field: OutputPathField) -> str:
    """The archive's path in `dist/`, refused (naming the targets) where it would leave `dist/`
    or where another image target writes it too: Pants would fail merging the outputs, after
    building both, with neither named."""
    path = field.value_or_default(file_ending="tar")
    normal = posixpath.normpath(path)
    if normal.startswith("/") or normal == ".." or normal.startswith("../"):
        raise OutputPathProblem(
            f"{address}: field `output_path`: {path!r} is outside dist/; give a relative path"
            " inside it, e.g. `agents/router.tar`"
        )
    if normal.split("/")[0] in (LAYOUT_DIR, ".ai-agent"):
        raise OutputPathProblem(
            f"{address}: field `output_path`: {path!r} is inside dist/{normal.split('/')[0]}/,"
            " which holds the OCI layout of every image; give a path outside it, e.g."
            " `agents/router.tar`"
        )
    paths = await Get(ArchiveOutputPaths)
    others = [str(other) for other in paths.owners.get(normal, ()) if other != address]
    if others:
        raise OutputPathProblem(
            f"{address}: field `output_path`: dist/{normal} is also where {', '.join(others)}"
            " write(s) an image; give each target its own `output_path`"
        )
    return path


class ImageNameProblem(InvalidFieldException):
    """Two image targets give their images one name, which `dist/oci/` can hold once."""


@dataclass(frozen=True)
class LayoutNames:
    """Which image targets name their image `repository:tag`, for every name."""

    owners: FrozenDict[str, Tuple[Address, ...]]


@rule(desc="Listing the names of images", level=LogLevel.DEBUG)
async def layout_names(all_targets: AllTargets) -> LayoutNames:
    owners: Dict[str, List[Address]] = {}
    for target in all_targets:
        if target.has_field(AgentConfigSourceField):
            names = agent_image_names(target)
        elif target.has_field(BaseImageLockfileField):
            names = base_image_names(target.address)
        else:
            continue
        for name in {ref_name(name) for name in names}:
            owners.setdefault(name, []).append(target.address)
    return LayoutNames(
        FrozenDict((name, tuple(sorted(addresses))) for name, addresses in owners.items())
    )


async def check_layout_name(address: Address) -> None:
    """Refuse, before building, an image named as another image target names its own: the
    shared layout in `dist/` holds one image per name (and pushes of both to one registry would
    overwrite each other)."""
    known = await Get(LayoutNames)
    for name, owners in sorted(known.owners.items()):
        others = [str(other) for other in owners if other != address]
        if address in owners and others:
            raise ImageNameProblem(
                f"{address}: its image is named {name}, as is the image of {', '.join(others)};"
                f" dist/{LAYOUT_DIR}/ holds one image per name: give each target its own"
                " `repository` or `image_tags` (a base image: its own target name)"
            )


def rules():
    return collect_rules()
