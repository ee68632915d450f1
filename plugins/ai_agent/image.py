"""Assembling images: layers and config into one docker-loadable OCI archive, by the OCI core's
`image` command running as a cacheable process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Tuple

from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestContents,
    DigestSubset,
    FileContent,
    MergeDigests,
    PathGlobs,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.builder import BuildStep, BuildStepOutput, ImageBuilder
from ai_agent.oci.types import canonical_json
from ai_agent.subsystem import AiAgentSubsystem

_SPEC = "__image_spec.json"


@dataclass(frozen=True)
class ImageArchiveRequest:
    """One single-platform image to write as an archive at `output_path`."""

    owner: str
    tag: str
    platform: str
    inputs: Digest
    layer_descriptors: Tuple[str, ...]
    config_json: str
    output_path: str

    @classmethod
    def create(
        cls,
        *,
        owner: str,
        tag: str,
        platform: str,
        inputs: Digest,
        layer_descriptors: Tuple[str, ...],
        config: Mapping[str, Any],
        output_path: str,
    ) -> ImageArchiveRequest:
        return cls(
            owner,
            tag,
            platform,
            inputs,
            layer_descriptors,
            canonical_json(config).decode(),
            output_path,
        )


@dataclass(frozen=True)
class ImageArchive:
    """The archive and its metadata JSON (manifest and config digests, layers), both in `digest`."""

    digest: Digest
    archive_path: str
    metadata_path: str
    manifest_digest: str
    image_id: str


@rule(desc="Writing an image archive", level=LogLevel.DEBUG)
async def write_image_archive(
    request: ImageArchiveRequest, builder: ImageBuilder, subsystem: AiAgentSubsystem
) -> ImageArchive:
    spec = {
        "tags": [request.tag],
        "source_date_epoch": subsystem.source_date_epoch,
        "images": [
            {
                "platform": request.platform,
                "layers": list(request.layer_descriptors),
                "config": json.loads(request.config_json),
            }
        ],
    }
    spec_digest = await Get(Digest, CreateDigest([FileContent(_SPEC, canonical_json(spec))]))
    inputs = await Get(Digest, MergeDigests([request.inputs, spec_digest]))
    metadata_path = f"{request.output_path}.json"
    output = await Get(
        BuildStepOutput,
        BuildStep(
            builder.process(
                "oci",
                ["image", "--spec", _SPEC, "--output", request.output_path]
                + ["--metadata", metadata_path],
                description=f"Writing the image archive for {request.owner}",
                input_digest=inputs,
                output_files=(request.output_path, metadata_path),
            ),
            owner=request.owner,
        ),
    )
    metadata_contents = await Get(
        DigestContents, DigestSubset(output.digest, PathGlobs([metadata_path]))
    )
    metadata = json.loads(metadata_contents[0].content)
    return ImageArchive(
        digest=output.digest,
        archive_path=request.output_path,
        metadata_path=metadata_path,
        manifest_digest=metadata["digest"],
        image_id=metadata["docker"]["imageID"],
    )


def rules():
    return collect_rules()
