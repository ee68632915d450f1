"""`./pants package` for image targets: an `ai_agent`'s image, or a base image on its own, placed
in `dist/` as an OCI image layout, its metadata JSON, and its archive if `[ai-agents].archives`."""

from __future__ import annotations

from dataclasses import dataclass

from pants.core.goals.package import BuiltPackage, OutputPathField, PackageFieldSet
from pants.core.util_rules.distdir import DistDir
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from ai_agent.oci.types import canonical_json
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import AgentConfigSourceField, BaseImageLockfileField
from ai_agent.util_rules.agent_image import MIB, AgentImage, AgentImageRequest
from ai_agent.util_rules.base_image import BaseImageRequest
from ai_agent.util_rules.dist import checked_output_path, exported_package
from ai_agent.util_rules.frozen import thawed
from ai_agent.util_rules.image import (
    BaseImage,
    ImageArchiveRequest,
    ImageDescription,
    PlatformImage,
)


@dataclass(frozen=True)
class AgentPackageFieldSet(PackageFieldSet):
    required_fields = (AgentConfigSourceField,)

    output_path: OutputPathField


@rule(desc="Packaging an ai_agent image", level=LogLevel.DEBUG)
async def package_agent(
    field_set: AgentPackageFieldSet, dist_dir: DistDir, subsystem: AiAgentSubsystem
) -> BuiltPackage:
    output_path = await checked_output_path(field_set.address, field_set.output_path)
    image = await Get(AgentImage, AgentImageRequest(field_set.address, output_path))
    metadata = image.metadata
    layers = metadata["images"][0]["layers"]
    size = sum(layer["size"] for layer in layers)
    tags = ", ".join(f"{metadata['repository']}:{tag}" for tag in metadata["tags"])
    return await exported_package(
        image.archive,
        image.metadata_file(),
        f"{field_set.address}: {metadata['digest']} ({len(layers)} layers, {size / MIB:.1f} MiB,"
        f" tagged {tags}; details in {dist_dir.relpath / output_path}.json)",
        dist_dir,
        subsystem,
    )


@dataclass(frozen=True)
class BaseImagePackageFieldSet(PackageFieldSet):
    required_fields = (BaseImageLockfileField,)

    lockfile: BaseImageLockfileField
    output_path: OutputPathField


@rule(desc="Packaging a base image", level=LogLevel.DEBUG)
async def package_base_image(
    field_set: BaseImagePackageFieldSet, dist_dir: DistDir, subsystem: AiAgentSubsystem
) -> BuiltPackage:
    output_path = await checked_output_path(field_set.address, field_set.output_path)
    base = await Get(BaseImage, BaseImageRequest(field_set.address))
    request = ImageArchiveRequest(
        owner=str(field_set.address),
        tags=(f"{field_set.address.target_name}:latest",),
        images=(
            PlatformImage.create(base=base, inputs=EMPTY_DIGEST, layer_descriptors=(), config={}),
        ),
        output_path=output_path,
    )
    description = await Get(ImageDescription, ImageArchiveRequest, request)
    return await exported_package(
        request,
        canonical_json(thawed(description.metadata)),
        f"    manifest {description.manifest_digest}",
        dist_dir,
        subsystem,
    )


def rules():
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, AgentPackageFieldSet),
        UnionRule(PackageFieldSet, BaseImagePackageFieldSet),
    ]
