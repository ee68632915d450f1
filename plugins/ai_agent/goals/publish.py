"""`./pants publish` for `ai_agent` targets: the image pushed by the OCI core's `push` command from
its build steps' outputs, blobs as they are (so the registry's manifest digest is the one
`package` printed), to every tag in `image_tags`. No archive is built for it: the registry is
asked first which layers it lacks, and only those layers' blobs are inputs of the push (mounted
from where Pants' store has them; with deferred cache content, the others are never fetched).
The same push then attaches the image's SBOM (each platform's to that platform's manifest) and
provenance (to the image's digest) as OCI 1.1 referrers (`oci/referrers.py`)."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Sequence, Tuple

from pants.core.goals.package import OutputPathField
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.fs import Digest, DigestSubset, MergeDigests, PathGlobs
from pants.engine.process import InteractiveProcess
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.target import AllTargets
from pants.util.logging import LogLevel

from ai_agent.oci.name import Repository
from ai_agent.oci.recipe import BlobRecipe
from ai_agent.oci.referrers import IN_TOTO_JSON, SPDX_JSON
from ai_agent.target_types import (
    AgentConfigSourceField,
    AgentImageTagsField,
    AgentRepositoryField,
    AiAgentTarget,
)
from ai_agent.util_rules.agent_image import AgentImage, AgentImageRequest
from ai_agent.util_rules.builder import BuildStep, BuildStepOutput, ImageBuilder, read_json_files
from ai_agent.util_rules.dist import checked_output_path
from ai_agent.util_rules.image import (
    IMAGE_SPEC,
    CompleteImage,
    DescribedImage,
    ImageArchiveRequest,
)
from ai_agent.util_rules.network import RegistryAccess
from ai_agent.util_rules.sbom import Sbom, SbomRequest


class PublishAgentRequest(PublishRequest):
    pass


@dataclass(frozen=True)
class PublishAgentFieldSet(PublishFieldSet):
    publish_request_type = PublishAgentRequest
    required_fields = (AgentConfigSourceField,)

    repository: AgentRepositoryField
    image_tags: AgentImageTagsField
    output_path: OutputPathField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData(
            {"publisher": "ai_agent", "target": self.address, "repository": self.repository.value}
        )


async def _layer_paths(
    request: ImageArchiveRequest, described: DescribedImage
) -> Dict[str, Tuple[str, ...]]:
    """Where each layer blob of the image lies among its build steps' outputs, by digest: its
    file, or for a layer kept as a recipe the files the recipe names (`oci/recipe.py`)."""
    paths: Dict[str, Tuple[str, ...]] = {
        layer.digest: (layer.path,) for image in request.images for layer in image.base.layers
    }
    descriptor_paths = [path for image in request.images for path in image.layer_descriptors]
    descriptors = await read_json_files((described.digest, path) for path in descriptor_paths)
    for path, descriptor in zip(descriptor_paths, descriptors):
        directory = posixpath.dirname(path)
        if "recipe" in descriptor:
            recipe = BlobRecipe.from_json(descriptor["recipe"], Path(directory), path)
            paths[descriptor["digest"]] = tuple(map(posixpath.normpath, recipe.sources))
        else:
            paths[descriptor["digest"]] = (posixpath.join(directory, descriptor["blob"]),)
    return paths


def _attachments(request: SbomRequest, sbom: Sbom) -> Tuple[Tuple[str, str, str], ...]:
    """What the push attaches to the image: each platform's SPDX document to that platform's
    manifest, the provenance to the image's digest (an index's, or its one manifest's)."""
    spdx = tuple(
        (SPDX_JSON, image.manifest, path) for image, path in zip(request.images, sbom.spdx_paths)
    )
    return (*spdx, (IN_TOTO_JSON, request.digest, sbom.provenance_path))


async def _mount_sources(repository: str) -> Tuple[str, ...]:
    """The other agents' repositories in the same registry: a layer one of them has (the same
    torch, the same base) is mounted from it, not uploaded again."""
    registry = Repository.parse(repository).registry
    all_targets = await Get(AllTargets)
    return tuple(
        sorted(
            {
                other
                for target in all_targets
                if isinstance(target, AiAgentTarget)
                and (other := target[AgentRepositoryField].value)
                and other != repository
                and Repository.parse(other).registry == registry
            }
        )
    )


async def _push_inputs(
    request: ImageArchiveRequest,
    repository: str,
    mount_from: Sequence[str],
    builder: ImageBuilder,
    access: RegistryAccess,
) -> Digest:
    """The image's spec and descriptors, and the blobs of only the layers `repository` lacks
    (asked first): the others are never read, nor fetched from a remote cache with
    `[GLOBAL].cache_content_behavior = "defer"`."""
    described = await Get(DescribedImage, ImageArchiveRequest, request)
    asked = BuildStep(
        builder.oci_missing_layers(
            access=access,
            spec=IMAGE_SPEC,
            repository=repository,
            mount_from=mount_from,
            inputs=described.digest,
            description=f"Asking {repository} which layers of {request.owner} it lacks",
        ),
        owner=request.owner,
    )
    missing = (await Get(BuildStepOutput, BuildStep, asked)).stdout_json()
    if not missing:
        return described.digest
    paths = await _layer_paths(request, described)
    base_layers = {layer.digest for image in request.images for layer in image.base.layers}
    if base_layers.intersection(missing):
        # Only now are the base's blobs needed (pulled, or fetched from a cache).
        complete = await Get(CompleteImage, DescribedImage, described)
        candidates = complete.digest
    else:
        candidates = await Get(Digest, MergeDigests(image.inputs for image in request.images))
    blobs = await Get(
        Digest,
        DigestSubset(candidates, PathGlobs([path for digest in missing for path in paths[digest]])),
    )
    return await Get(Digest, MergeDigests([described.digest, blobs]))


@rule(desc="Preparing to push an agent image", level=LogLevel.DEBUG)
async def publish_agent(
    request: PublishAgentRequest, builder: ImageBuilder, access: RegistryAccess
) -> PublishProcesses:
    field_set = request.field_set
    repository = field_set.repository.value
    if not repository:
        return PublishProcesses(
            [
                PublishPackages(
                    names=(str(field_set.address),),
                    description="no `repository` field: nowhere to push",
                )
            ]
        )
    # The package in `request.packages` is in `dist/`, not in a digest (see `util_rules/dist.py`).
    output_path = await checked_output_path(field_set.address, field_set.output_path)
    image = await Get(AgentImage, AgentImageRequest(field_set.address, output_path))
    mount_from = await _mount_sources(repository)
    image_inputs = await _push_inputs(image.archive, repository, mount_from, builder, access)
    sbom = await Get(Sbom, SbomRequest, image.sbom)
    inputs = await Get(Digest, MergeDigests([image_inputs, sbom.digest]))
    refs = [f"{repository}:{tag}" for tag in field_set.image_tags.value or ()]
    process = builder.oci_push(
        access=access,
        spec=IMAGE_SPEC,
        refs=refs,
        mount_from=mount_from,
        attach=_attachments(image.sbom, sbom),
        inputs=inputs,
        description=f"Pushing {field_set.address} to {repository}",
    )
    return PublishProcesses(
        [
            PublishPackages(
                names=tuple(refs),
                process=InteractiveProcess.from_process(process),
                description=repository,
            )
        ]
    )


def rules():
    return [*collect_rules(), *PublishAgentFieldSet.rules()]
