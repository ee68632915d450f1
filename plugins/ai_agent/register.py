"""Pants backend entry point for the `ai_agent` plugin: its rules and target types."""

from ai_agent import (
    agent,
    agent_image,
    base_images,
    builder,
    check_locks,
    image,
    layers,
    publish,
    run,
    verify,
)
from ai_agent.target_types import AiAgentTarget, DebianBaseTarget, OciBaseTarget


def rules():
    return [
        *builder.rules(),
        *check_locks.rules(),
        *image.rules(),
        *base_images.rules(),
        *agent.rules(),
        *layers.rules(),
        *agent_image.rules(),
        *publish.rules(),
        *run.rules(),
        *verify.rules(),
    ]


def target_types():
    return [AiAgentTarget, DebianBaseTarget, OciBaseTarget]
