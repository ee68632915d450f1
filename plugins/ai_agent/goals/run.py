"""`./pants run` for `ai_agent` targets: the packaged archive loaded into the local Docker and run
in the foreground by `docker_load_and_run.py` (docker-py, installed as the `[ai-agents-runner]`
tool)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pants.backend.python.target_types import EntryPoint
from pants.backend.python.util_rules.pex import PexRequest, VenvPex
from pants.core.goals.package import OutputPathField
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.engine.fs import CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.subsystems import AgentRunner
from ai_agent.target_types import AgentConfigSourceField
from ai_agent.util_rules.agent_image import AgentImage, AgentImageRequest
from ai_agent.util_rules.image import ImageArchive, ImageArchiveRequest

_RUNNER = "docker_load_and_run.py"


@dataclass(frozen=True)
class AgentRunFieldSet(RunFieldSet):
    required_fields = (AgentConfigSourceField,)
    # It talks to the Docker daemon: nothing to cache.
    run_in_sandbox_behavior = RunInSandboxBehavior.NOT_SUPPORTED

    output_path: OutputPathField


@rule(desc="Preparing to run an agent image", level=LogLevel.DEBUG)
async def run_agent(field_set: AgentRunFieldSet, runner: AgentRunner) -> RunRequest:
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
    archive = await Get(ImageArchive, ImageArchiveRequest, image.archive)
    metadata = image.metadata
    config_ports = metadata["exposedPorts"]
    digest = await Get(Digest, MergeDigests([archive.digest, pex.digest]))
    args = [
        f"{{chroot}}/{pex.pex.argv0}",
        "--agent",
        str(field_set.address),
        "--archive",
        f"{{chroot}}/{archive.archive_path}",
        "--image-id",
        archive.image_id,
        *(arg for port in config_ports for arg in ("--publish", port)),
    ]
    if metadata["accelerator"] != "cpu":
        args.append("--gpus")
    return RunRequest(
        digest=digest,
        args=args,
        append_only_caches=pex.append_only_caches,
    )


def rules():
    return [*collect_rules(), *AgentRunFieldSet.rules()]
