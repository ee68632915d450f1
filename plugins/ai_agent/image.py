"""Assembling images: a base image, new layers and a config update into one docker-loadable OCI
archive, by the OCI core's `image` command running as a cacheable process; and placing the
archive and its metadata in `dist/`.

Pants' `package` goal would write a package's files into `dist/` itself, truncating and
rewriting them in place: a kill midway leaves a torn archive beside new metadata, and every run
rewrites gigabytes that did not change. So image packages hand it nothing to write
(`exported_package`); the OCI core's `export` command places the files, whole or not at all, the
metadata last, hardlinked from Pants' store where the filesystem allows. It runs on every
`package` (its work is in `dist/`, which no cache holds) and writes only what changed.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Tuple

from pants.base.build_root import BuildRoot
from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, OutputPathField
from pants.core.util_rules.distdir import DistDir
from pants.engine.addresses import Address
from pants.engine.fs import (
    EMPTY_DIGEST,
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
)
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.oci.types import canonical_json
from ai_agent.subsystem import AiAgentSubsystem
from ai_agent.target_types import AgentConfigSourceField, BaseImageLockfileField

_SPEC = "__image_spec.json"


@dataclass(frozen=True)
class BaseLayer:
    """A layer of a base image: its descriptor and diffID, known without its bytes, and where its
    blob lies once the base's `layer_blob_steps` have run."""

    media_type: str
    digest: str
    size: int
    diff_id: str
    path: str


@dataclass(frozen=True)
class BaseImage:
    """What an image is stacked on, whichever kind of base target made it (`base_images.py`).

    `config` holds the base's complete image config at `config_path`; it sets the platform, and
    the diffIDs of `layers` in order. The layer bytes are written by `layer_blob_steps`, cacheable
    processes to run only where the bytes are needed (an archive), never just to learn a digest.
    `packages` are what is inside, as `name=version`, for the SBOM; empty where the base's own
    metadata does not say (a registry base).
    """

    address: Address
    platform: str
    config: Digest
    config_path: str
    layers: Tuple[BaseLayer, ...]
    layer_blob_steps: Tuple[BuildStep, ...]
    packages: Tuple[str, ...]
    # The steps already run to describe the base (its config, its layers' digests).
    described_by: Tuple[BuildStep, ...]

    @property
    def steps(self) -> Tuple[BuildStep, ...]:
        """Every step that makes the base's bytes, once each."""
        return tuple(dict.fromkeys((*self.described_by, *self.layer_blob_steps)))

    def spec(self) -> Dict[str, Any]:
        """The image spec's `base` section: the config and the layer blobs, carried as they are."""
        return {
            "config": self.config_path,
            "layers": [
                {
                    "mediaType": layer.media_type,
                    "digest": layer.digest,
                    "size": layer.size,
                    "path": layer.path,
                }
                for layer in self.layers
            ],
        }


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image: `base`, then the new layers (`descriptor.json` paths in `inputs`, as
    the `layer` commands write them), then the config update."""

    base: BaseImage
    inputs: Digest
    layer_descriptors: Tuple[str, ...]
    config_json: str

    @classmethod
    def create(
        cls,
        *,
        base: BaseImage,
        inputs: Digest,
        layer_descriptors: Tuple[str, ...],
        config: Mapping[str, Any],
    ) -> PlatformImage:
        return cls(base, inputs, layer_descriptors, canonical_json(config).decode())

    def spec(self) -> Dict[str, Any]:
        return {
            "base": self.base.spec(),
            "layers": list(self.layer_descriptors),
            "config": json.loads(self.config_json),
        }


@dataclass(frozen=True)
class ImageArchiveRequest:
    """An archive at `output_path` holding one image, or an index of several platforms' images
    (docker loads the first). `tags[0]` names it in the archive."""

    owner: str
    tags: Tuple[str, ...]
    images: Tuple[PlatformImage, ...]
    output_path: str


@dataclass(frozen=True)
class ImageArchive:
    """The archive (and the metadata JSON the `image` command writes beside it), in `digest`;
    `image_id` is what `docker load` of it gives."""

    digest: Digest
    archive_path: str
    image_id: str
    step: BuildStep


@dataclass(frozen=True)
class DescribedImage:
    """The spec of `request`'s image at `_SPEC`, with every config and layer descriptor it
    names: all the OCI core's `image` command reads but the blobs."""

    request: ImageArchiveRequest
    digest: Digest


@dataclass(frozen=True)
class CompleteImage:
    """A `DescribedImage` with its layer blobs: what writing the image's files reads."""

    digest: Digest


@rule(desc="Gathering an image's spec and descriptors", level=LogLevel.DEBUG)
async def described_image(
    request: ImageArchiveRequest, subsystem: AiAgentSubsystem
) -> DescribedImage:
    spec = {
        "tags": list(request.tags),
        "source_date_epoch": subsystem.source_date_epoch,
        "images": [image.spec() for image in request.images],
    }
    spec_digest = await Get(Digest, CreateDigest([FileContent(_SPEC, canonical_json(spec))]))
    descriptors = await MultiGet(
        Get(Digest, DigestSubset(image.inputs, PathGlobs(image.layer_descriptors)))
        for image in request.images
    )
    configs = [image.base.config for image in request.images]
    digest = await Get(Digest, MergeDigests([*descriptors, *configs, spec_digest]))
    return DescribedImage(request, digest)


@rule(desc="Gathering an image's blobs", level=LogLevel.DEBUG)
async def complete_image(described: DescribedImage) -> CompleteImage:
    """Runs the base's blob steps: only what writes the image's files asks for this."""
    images = described.request.images
    base_blobs = await MultiGet(
        Get(BuildStepOutput, BuildStep, step)
        for image in images
        for step in image.base.layer_blob_steps
    )
    digest = await Get(
        Digest,
        MergeDigests(
            [
                described.digest,
                *(image.inputs for image in images),
                *(blobs.digest for blobs in base_blobs),
            ]
        ),
    )
    return CompleteImage(digest)


@dataclass(frozen=True)
class ImageDescription:
    """What the image of a request is (its metadata JSON, as the archive's), learnt from the
    layers' descriptors without reading a blob."""

    metadata_json: str
    manifest_digest: str
    step: BuildStep


def _image_step(
    builder: ImageBuilder, request: ImageArchiveRequest, inputs: Digest, archive: bool
) -> BuildStep:
    """The OCI core's `image` command for `request`: the metadata JSON beside the archive's
    path, and the archive itself if `archive`."""
    metadata_path = f"{request.output_path}.json"
    output = [request.output_path] if archive else []
    return BuildStep(
        builder.process(
            "oci",
            ["image", "--spec", _SPEC]
            + [arg for path in output for arg in ("--output", path)]
            + ["--metadata", metadata_path],
            description=(
                f"Writing the image archive for {request.owner}"
                if archive
                else f"Describing the image of {request.owner}"
            ),
            input_digest=inputs,
            output_files=(*output, metadata_path),
        ),
        owner=request.owner,
    )


async def _metadata(step: BuildStep, request: ImageArchiveRequest) -> Tuple[Digest, bytes]:
    """Run `step` (an `_image_step`): its output, and the metadata JSON in it."""
    output = await Get(BuildStepOutput, BuildStep, step)
    (metadata,) = await Get(
        DigestContents, DigestSubset(output.digest, PathGlobs([f"{request.output_path}.json"]))
    )
    return output.digest, metadata.content


@rule(desc="Describing an image", level=LogLevel.DEBUG)
async def describe_image(request: ImageArchiveRequest, builder: ImageBuilder) -> ImageDescription:
    described = await Get(DescribedImage, ImageArchiveRequest, request)
    step = _image_step(builder, request, described.digest, archive=False)
    _, metadata = await _metadata(step, request)
    return ImageDescription(
        metadata_json=metadata.decode(),
        manifest_digest=json.loads(metadata)["digest"],
        step=step,
    )


@rule(desc="Writing an image archive", level=LogLevel.DEBUG)
async def write_image_archive(request: ImageArchiveRequest, builder: ImageBuilder) -> ImageArchive:
    described = await Get(DescribedImage, ImageArchiveRequest, request)
    complete = await Get(CompleteImage, DescribedImage, described)
    step = _image_step(builder, request, complete.digest, archive=True)
    digest, metadata = await _metadata(step, request)
    return ImageArchive(
        digest=digest,
        archive_path=request.output_path,
        image_id=json.loads(metadata)["docker"]["imageID"],
        step=step,
    )


def layout_path(output_path: str) -> str:
    """Where in `dist/` the OCI image layout of an image whose archive path is `output_path`
    goes: beside it, named like it with `.oci` for `.tar`."""
    stem = output_path[: -len(".tar")] if output_path.endswith(".tar") else output_path
    return f"{stem}.oci"


@dataclass(frozen=True)
class DistExportRequest:
    """An image placed in `dist/`: its OCI layout (from `request`), then `paths` of `digest`
    (the archive, if any, then the metadata JSON, placed last); `remove` what is not wanted
    any more (an archive from when archives were on)."""

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
    export: DistExportRequest, builder: ImageBuilder, dist_dir: DistDir, build_root: BuildRoot
) -> DistExport:
    request = export.request
    described = await Get(DescribedImage, ImageArchiveRequest, request)
    complete = await Get(CompleteImage, DescribedImage, described)
    into = str(build_root.pathlib_path / dist_dir.relpath)
    step = BuildStep(
        builder.process(
            "oci",
            ["export", "--into", into, "--layout", layout_path(request.output_path)]
            + ["--spec", _SPEC]
            + [f"--remove={path}" for path in export.remove]
            + list(export.paths),
            description=f"Placing {request.owner}'s image in {dist_dir.relpath}/",
            input_digest=await Get(Digest, MergeDigests([complete.digest, export.digest])),
            # `dist/` is outside every cache: look at it on every run.
            cache_scope=ProcessCacheScope.PER_SESSION,
        ),
        owner=request.owner,
    )
    output = await Get(BuildStepOutput, BuildStep, step)
    result = json.loads(output.stdout)
    return DistExport(tuple(result["written"]), tuple(result["unchanged"]))


async def exported_package(
    request: ImageArchiveRequest,
    metadata_json: str,
    summary: str,
    dist_dir: DistDir,
    subsystem: AiAgentSubsystem,
) -> BuiltPackage:
    """A package placed in `dist/` by the `export` step: the image's OCI layout, its archive if
    `[ai-agents].archives`, and `metadata_json` last. Pants is given nothing to write, only
    what to print."""
    metadata_path = f"{request.output_path}.json"
    metadata = await Get(Digest, CreateDigest([FileContent(metadata_path, metadata_json.encode())]))
    paths: Tuple[str, ...] = (metadata_path,)
    remove: Tuple[str, ...] = (request.output_path,)
    if subsystem.archives:
        archive = await Get(ImageArchive, ImageArchiveRequest, request)
        archive_only = await Get(
            Digest, DigestSubset(archive.digest, PathGlobs([archive.archive_path]))
        )
        metadata = await Get(Digest, MergeDigests([archive_only, metadata]))
        paths, remove = (archive.archive_path, metadata_path), ()
    export = await Get(DistExport, DistExportRequest(request, metadata, paths, remove))
    lines = [f"Wrote {dist_dir.relpath / path}" for path in export.written] + [
        f"Unchanged {dist_dir.relpath / path}" for path in export.unchanged
    ]
    return BuiltPackage(EMPTY_DIGEST, (BuiltPackageArtifact(None, (*lines, summary)),))


class OutputPathProblem(Exception):
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
