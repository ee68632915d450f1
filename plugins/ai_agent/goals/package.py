"""`./pants package` for image targets: an `ai_agent`'s image, or a base image on its own, placed
in `dist/` as an OCI image layout, its metadata JSON, its archive if `[ai-agents].archives`, and
its SBOM (SPDX 2.3) and provenance (in-toto, SLSA v1) beside them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict

from pants.core.goals.package import BuiltPackage, OutputPathField, PackageFieldSet
from pants.core.util_rules.distdir import DistDir
from pants.engine.fs import EMPTY_DIGEST
from pants.engine.rules import Get, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from ai_agent.oci.types import canonical_json
from ai_agent.subsystems import AiAgentSubsystem
from ai_agent.target_types import (
    AgentConfigSourceField,
    BaseImageLockfileField,
    base_image_names,
)
from ai_agent.util_rules.agent_image import MIB, AgentImage, AgentImageRequest
from ai_agent.util_rules.base_image import BaseImageRequest
from ai_agent.util_rules.dist import (
    check_layout_name,
    checked_output_path,
    exported_package,
    layout_metadata,
)
from ai_agent.util_rules.frozen import thawed
from ai_agent.util_rules.image import (
    BaseImage,
    ImageArchiveRequest,
    ImageDescription,
    PlatformImage,
)
from ai_agent.util_rules.sbom import Sbom, SbomImage, SbomRequest


@dataclass(frozen=True)
class AgentPackageFieldSet(PackageFieldSet):
    required_fields = (AgentConfigSourceField,)

    output_path: OutputPathField


def _sbom_entry(sbom: Sbom) -> Dict[str, Any]:
    """Where the metadata says the SBOM and provenance are (relative to `dist/`)."""
    return {"spdx": list(sbom.spdx_paths), "provenance": sbom.provenance_path}


def _sbom_summary(dist_dir: DistDir, sbom: Sbom) -> str:
    return (
        f"SBOM in {', '.join(str(dist_dir.relpath / path) for path in sbom.spdx_paths)},"
        f" provenance in {dist_dir.relpath / sbom.provenance_path}"
    )


@rule(desc="Packaging an ai_agent image", level=LogLevel.DEBUG)
async def package_agent(
    field_set: AgentPackageFieldSet, dist_dir: DistDir, subsystem: AiAgentSubsystem
) -> BuiltPackage:
    output_path = await checked_output_path(field_set.address, field_set.output_path)
    if subsystem.layouts:
        await check_layout_name(field_set.address)
    image = await Get(AgentImage, AgentImageRequest(field_set.address, output_path))
    metadata = image.metadata
    layers = metadata["images"][0]["layers"]
    size = sum(layer["size"] for layer in layers)
    tags = ", ".join(f"{metadata['repository']}:{tag}" for tag in metadata["tags"])
    sbom = await Get(Sbom, SbomRequest, image.sbom)
    return await exported_package(
        image.archive,
        (
            json.dumps({**thawed(metadata), "sbom": _sbom_entry(sbom)}, indent=2, sort_keys=True)
            + "\n"
        ).encode(),
        f"{field_set.address}: {metadata['digest']} ({len(layers)} layers, {size / MIB:.1f} MiB,"
        f" tagged {tags}; details in {dist_dir.relpath / output_path}.json;"
        f" {_sbom_summary(dist_dir, sbom)})",
        dist_dir,
        subsystem,
        sbom,
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
    if subsystem.layouts:
        await check_layout_name(field_set.address)
    base = await Get(BaseImage, BaseImageRequest(field_set.address))
    names = base_image_names(field_set.address)
    request = ImageArchiveRequest(
        owner=str(field_set.address),
        tags=names,
        images=(
            PlatformImage.create(base=base, inputs=EMPTY_DIGEST, layer_descriptors=(), config={}),
        ),
        output_path=output_path,
    )
    description = await Get(ImageDescription, ImageArchiveRequest, request)
    (image_metadata,) = description.metadata["images"]
    sbom_request = SbomRequest(
        owner=str(field_set.address),
        output_path=output_path,
        repository=field_set.address.target_name,
        tags=("latest",),
        digest=description.manifest_digest,
        images=(
            SbomImage(
                platform=image_metadata["platform"],
                manifest=image_metadata["manifest"]["digest"],
                config=image_metadata["config"]["digest"],
                # A registry base carried as it is descends from the image its lock pins.
                base=None if base.packages_file else base,
                packages=base if base.packages_file else None,
            ),
        ),
        locks=FrozenDict({base.sbom["lock"]["path"]: base.sbom["lock"]["sha256"]}),
    )
    sbom = await Get(Sbom, SbomRequest, sbom_request)
    return await exported_package(
        request,
        canonical_json(
            {
                **thawed(description.metadata),
                "layout": layout_metadata(names) if subsystem.layouts else None,
                "sbom": _sbom_entry(sbom),
            }
        ),
        f"    manifest {description.manifest_digest}; {_sbom_summary(dist_dir, sbom)}",
        dist_dir,
        subsystem,
        sbom,
    )


def rules():
    return [
        *collect_rules(),
        UnionRule(PackageFieldSet, AgentPackageFieldSet),
        UnionRule(PackageFieldSet, BaseImagePackageFieldSet),
    ]
