"""Pants backend entry point for the `ai_agent` plugin: its rules and target types."""

from ai_agent import base_images, builder, image
from ai_agent.target_types import DebianBaseTarget, OciBaseTarget


def rules():
    return [*builder.rules(), *image.rules(), *base_images.rules()]


def target_types():
    return [DebianBaseTarget, OciBaseTarget]
