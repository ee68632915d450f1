"""Pants backend entry point for the `ai_agent` plugin: its rules and target types."""

from ai_agent.goals import (
    check_locks,
    generate_lockfiles,
    package,
    publish,
    run,
    verify_reproducible,
)
from ai_agent.target_types import AiAgentTarget, DebianBaseTarget, OciBaseTarget
from ai_agent.util_rules import (
    agent,
    agent_image,
    base_image,
    builder,
    debian_base,
    dist,
    image,
    layers,
    network,
    platform_base,
    registry_base,
    sbom,
    step_python,
    wheel_layers,
)


def rules():
    return [
        *builder.rules(),
        *step_python.rules(),
        *network.rules(),
        *agent.rules(),
        *base_image.rules(),
        *debian_base.rules(),
        *registry_base.rules(),
        *platform_base.rules(),
        *layers.rules(),
        *wheel_layers.rules(),
        *image.rules(),
        *dist.rules(),
        *sbom.rules(),
        *agent_image.rules(),
        *package.rules(),
        *publish.rules(),
        *run.rules(),
        *verify_reproducible.rules(),
        *check_locks.rules(),
        *generate_lockfiles.rules(),
    ]


def target_types():
    return [AiAgentTarget, DebianBaseTarget, OciBaseTarget]
