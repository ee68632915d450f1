"""`./pants run` for `ai_agent` targets: the image loaded into the local Docker and run in the
foreground by `docker_load_and_run.py` (docker-py, installed as the `[ai-agents-runner]` tool).

No archive is built for it: the runner loads the image only if the daemon lacks it, by piping
the OCI core's archive writer (`image --output -`, reading the blobs where Pants' store has
them) straight into `docker load`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules.pex import PexRequest, VenvPex
from pants.core.goals.package import OutputPathField
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.engine.fs import CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.process import Process
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.subsystems import AgentRunner
from ai_agent.target_types import AgentConfigSourceField
from ai_agent.util_rules.agent_image import AgentImage, AgentImageRequest
from ai_agent.util_rules.builder import ImageBuilder
from ai_agent.util_rules.image import (
    IMAGE_SPEC,
    CompleteImage,
    DescribedImage,
    ImageArchiveRequest,
)

_RUNNER = "docker_load_and_run.py"
# What the runner reads to start the archive writer, and where the writer puts the metadata it
# writes beside every archive (not read here: the image ID is known from the description).
_LOAD_SPEC = "__load.json"
_WRITER_METADATA = "__streamed.json"


@dataclass(frozen=True)
class AgentRunFieldSet(RunFieldSet):
    required_fields = (AgentConfigSourceField,)
    # It talks to the Docker daemon: nothing to cache.
    run_in_sandbox_behavior = RunInSandboxBehavior.NOT_SUPPORTED

    output_path: OutputPathField


async def _archive_writer(image: AgentImage, builder: ImageBuilder) -> Tuple[Digest, Process]:
    """The image's files (spec, descriptors, blobs as the store has them) and the process that
    writes its archive to stdout from them, for the runner to pipe into `docker load`."""
    described = await Get(DescribedImage, ImageArchiveRequest, image.archive)
    complete = await Get(CompleteImage, DescribedImage, described)
    writer = builder.oci_image_stream(
        spec=IMAGE_SPEC, metadata=_WRITER_METADATA, inputs=complete.digest
    )
    load = {"argv": list(writer.argv), "env": dict(writer.env)}
    spec = await Get(Digest, CreateDigest([FileContent(_LOAD_SPEC, json.dumps(load).encode())]))
    return await Get(Digest, MergeDigests([complete.digest, spec])), writer


@rule(desc="Preparing to run an agent image", level=LogLevel.DEBUG)
async def run_agent(
    field_set: AgentRunFieldSet, runner: AgentRunner, builder: ImageBuilder
) -> RunRequest:
    output_path = field_set.output_path.value_or_default(file_ending="tar")
    image = await Get(AgentImage, AgentImageRequest(field_set.address, output_path))
    script = await Get(
        Digest,
        CreateDigest([FileContent(_RUNNER, (Path(__file__).parents[1] / _RUNNER).read_bytes())]),
    )
    pex = await Get(
        VenvPex,
        PexRequest,
        runner.to_pex_request(main=EntryPoint(Path(_RUNNER).stem), sources=script),
    )
    files, writer = await _archive_writer(image, builder)
    metadata = image.metadata
    args = [
        f"{{chroot}}/{pex.pex.argv0}",
        "--agent",
        str(field_set.address),
        "--load",
        f"{{chroot}}/{_LOAD_SPEC}",
        "--image-id",
        metadata["docker"]["imageID"],
        *(arg for port in metadata["exposedPorts"] for arg in ("--publish", port)),
    ]
    if metadata["accelerator"] != "cpu":
        args.append("--gpus")
    return RunRequest(
        digest=await Get(Digest, MergeDigests([files, pex.digest])),
        args=args,
        # The builder's sources and libraries, and its interpreter's files if it has any.
        immutable_input_digests=writer.immutable_input_digests,
        append_only_caches=_merged(writer.append_only_caches, pex.append_only_caches),
    )


def _merged(*caches: Optional[Mapping[str, str]]) -> Dict[str, str]:
    return {name: path for cache in caches for name, path in (cache or {}).items()}


def rules():
    return [*collect_rules(), *AgentRunFieldSet.rules()]
