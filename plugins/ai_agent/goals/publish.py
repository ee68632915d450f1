"""`./pants publish` for `ai_agent` targets: the image archive that `package` builds, pushed by
the OCI core's `push` command, blobs as they are (so the registry's manifest digest is the one
`package` printed), skipping blobs the registry already has, to every tag in `image_tags`."""

from __future__ import annotations

from dataclasses import dataclass

from pants.core.goals.package import OutputPathField
from pants.core.goals.publish import (
    PublishFieldSet,
    PublishOutputData,
    PublishPackages,
    PublishProcesses,
    PublishRequest,
)
from pants.engine.process import InteractiveProcess
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from ai_agent.target_types import AgentConfigSourceField, AgentImageTagsField, AgentRepositoryField
from ai_agent.util_rules.agent_image import AgentImage, AgentImageRequest
from ai_agent.util_rules.builder import ImageBuilder
from ai_agent.util_rules.dist import checked_output_path
from ai_agent.util_rules.image import ImageArchive, ImageArchiveRequest
from ai_agent.util_rules.network import RegistryAccess


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
    # The package in `request.packages` is in `dist/`, not in a digest (see `image.py`).
    output_path = await checked_output_path(field_set.address, field_set.output_path)
    image = await Get(AgentImage, AgentImageRequest(field_set.address, output_path))
    archive = await Get(ImageArchive, ImageArchiveRequest, image.archive)
    refs = [f"{repository}:{tag}" for tag in field_set.image_tags.value or ()]
    process = builder.oci_push(
        access=access,
        archive=archive.archive_path,
        refs=refs,
        inputs=archive.digest,
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
