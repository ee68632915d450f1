"""`./pants publish` for `ai_agent` targets: the packaged archive pushed by the OCI core's `push`
command, blobs as they are (so the registry's manifest digest is the one `package` printed),
skipping blobs the registry already has, to every tag in `image_tags`."""

from __future__ import annotations

from dataclasses import dataclass

from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.fs import Digest, MergeDigests
from pants.engine.process import InteractiveProcess
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.base_images import RegistryAccess
from ai_agent.builder import ImageBuilder
from ai_agent.target_types import AgentConfigSourceField, AgentImageTagsField, AgentRepositoryField


class PublishAgentRequest(PublishRequest):
    pass


@dataclass(frozen=True)
class PublishAgentFieldSet(PublishFieldSet):
    publish_request_type = PublishAgentRequest
    required_fields = (AgentConfigSourceField,)

    repository: AgentRepositoryField
    image_tags: AgentImageTagsField

    def get_output_data(self) -> PublishOutputData:
        return PublishOutputData(
            {"publisher": "ai_agent", "target": self.address, "repository": self.repository.value}
        )


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
    archives = [
        artifact.relpath
        for package in request.packages
        for artifact in package.artifacts
        if artifact.relpath and artifact.relpath.endswith(".tar")
    ]
    refs = [f"{repository}:{tag}" for tag in field_set.image_tags.value or ()]
    inputs = await Get(Digest, MergeDigests(package.digest for package in request.packages))
    process = builder.process(
        "oci",
        ["push", "--archive", archives[0]]
        + [arg for ref in refs for arg in ("--ref", ref)]
        + list(access.args),
        description=f"Pushing {field_set.address} to {repository}",
        input_digest=inputs,
        env=access.env,
        level=LogLevel.INFO,
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
