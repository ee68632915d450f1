"""Pants backend entry point for the `ai_agent` plugin.

Rules and target types are added here as the plugin grows; Pants loads this module because
`ai_agent` is listed in `[GLOBAL].backend_packages`.
"""


def rules():
    return []


def target_types():
    return []
