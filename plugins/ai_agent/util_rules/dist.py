"""Placing images in `dist/`.

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
from typing import Dict, List, Tuple

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

from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import AgentConfigSourceField, BaseImageLockfileField
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.util_rules.image import (
    IMAGE_SPEC,
    CompleteImage,
    DescribedImage,
    ImageArchive,
    ImageArchiveRequest,
)
from ai_agent.util_rules.sbom import Sbom


def layout_path(output_path: str) -> str:
    """Where in `dist/` the OCI image layout of an image whose archive path is `output_path`
    goes: beside it, named like it with `.oci` for `.tar`."""
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
    layout = layout_path(request.output_path)
    if subsystem.layouts:
        described = await Get(DescribedImage, ImageArchiveRequest, request)
        complete = await Get(CompleteImage, DescribedImage, described)
        inputs = await Get(Digest, MergeDigests([complete.digest, export.digest]))
        remove = export.remove
    else:
        # No blob is read: only the files of `export` are placed.
        inputs, remove = export.digest, (*export.remove, layout)
    step = BuildStep(
        builder.oci_export(
            into=str(build_root.pathlib_path / dist_dir.relpath),
            layout=layout if subsystem.layouts else None,
            spec=IMAGE_SPEC,
            paths=export.paths,
            remove=remove,
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
    """A package placed in `dist/` by the `export` step: the image's OCI layout if
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
    lines = [f"Wrote {dist_dir.relpath / path}" for path in export.written] + [
        f"Unchanged {dist_dir.relpath / path}" for path in export.unchanged
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
    paths = await Get(ArchiveOutputPaths)
    others = [str(other) for other in paths.owners.get(normal, ()) if other != address]
    if others:
        raise OutputPathProblem(
            f"{address}: field `output_path`: dist/{normal} is also where {', '.join(others)}"
            " write(s) an image; give each target its own `output_path`"
        )
    return path


def rules():
    return collect_rules()
