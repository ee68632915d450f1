"""Assembling images: a base image, new layers and a config update into an OCI image, by the
OCI core's `image` command running as a cacheable process: described from the layers'
descriptors alone (no blob read), or written as a docker-loadable archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

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
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.oci.types import canonical_json
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder, read_json
from ai_agent.util_rules.frozen import frozen, thawed

IMAGE_SPEC = "__image_spec.json"


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
    # What the SBOM says of the base (`util_rules/sbom.py`): its kind, repository, lock and, for
    # a registry base, its manifest digest; and the facts file its layer step wrote about the
    # packages inside (a Debian base's `packages.json`) at `packages_file` in `packages_facts`.
    sbom: FrozenDict[str, Any] = FrozenDict()
    packages_file: Optional[str] = None
    packages_facts: Digest = EMPTY_DIGEST

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
    config: FrozenDict[str, Any]

    @classmethod
    def create(
        cls,
        *,
        base: BaseImage,
        inputs: Digest,
        layer_descriptors: Tuple[str, ...],
        config: Mapping[str, Any],
    ) -> PlatformImage:
        return cls(base, inputs, layer_descriptors, frozen(config))

    def spec(self) -> Dict[str, Any]:
        return {
            "base": self.base.spec(),
            "layers": list(self.layer_descriptors),
            "config": thawed(self.config),
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
    """The spec of `request`'s image at `IMAGE_SPEC`, with every config and layer descriptor it
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
    spec_digest = await Get(Digest, CreateDigest([FileContent(IMAGE_SPEC, canonical_json(spec))]))
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

    metadata: FrozenDict[str, Any]
    step: BuildStep

    @property
    def manifest_digest(self) -> str:
        return str(self.metadata["digest"])


def _image_step(
    builder: ImageBuilder, request: ImageArchiveRequest, inputs: Digest, archive: bool
) -> BuildStep:
    """The OCI core's `image` command for `request`: the metadata JSON beside the archive's
    path, and the archive itself if `archive`."""
    return BuildStep(
        builder.oci_image(
            spec=IMAGE_SPEC,
            archive=request.output_path if archive else None,
            metadata=f"{request.output_path}.json",
            inputs=inputs,
            description=(
                f"Writing the image archive for {request.owner}"
                if archive
                else f"Describing the image of {request.owner}"
            ),
        ),
        owner=request.owner,
    )


async def _metadata(step: BuildStep, request: ImageArchiveRequest) -> Tuple[Digest, Any]:
    """Run `step` (an `_image_step`): its output, and the metadata JSON in it."""
    output = await Get(BuildStepOutput, BuildStep, step)
    return output.digest, await read_json(output.digest, f"{request.output_path}.json")


@rule(desc="Describing an image", level=LogLevel.DEBUG)
async def describe_image(request: ImageArchiveRequest, builder: ImageBuilder) -> ImageDescription:
    described = await Get(DescribedImage, ImageArchiveRequest, request)
    step = _image_step(builder, request, described.digest, archive=False)
    _, metadata = await _metadata(step, request)
    return ImageDescription(metadata=frozen(metadata), step=step)


@rule(desc="Writing an image archive", level=LogLevel.DEBUG)
async def write_image_archive(request: ImageArchiveRequest, builder: ImageBuilder) -> ImageArchive:
    described = await Get(DescribedImage, ImageArchiveRequest, request)
    complete = await Get(CompleteImage, DescribedImage, described)
    step = _image_step(builder, request, complete.digest, archive=True)
    digest, metadata = await _metadata(step, request)
    return ImageArchive(
        digest=digest,
        archive_path=request.output_path,
        image_id=metadata["docker"]["imageID"],
        step=step,
    )


def rules():
    return collect_rules()
