"""The build steps import `packaging` and `installer` from the [ai-agents-builder] lock, these tests
from the plugin resolve's lock: both must pin the same versions, the ones the tests import."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Dict

import installer
import packaging

REPO = Path(__file__).parents[3]
BUILDER_LOCK = REPO / "plugins" / "ai_agent" / "builder.lock"
PLUGIN_LOCK = REPO / "lockfiles" / "pants-plugins.lock"


def _pins(lock: Path) -> Dict[str, str]:
    text = lock.read_text(encoding="utf-8")
    body = "".join(line for line in text.splitlines(True) if not line.startswith("//"))
    return {
        requirement["project_name"]: requirement["version"]
        for resolve in json.loads(body)["locked_resolves"]
        for requirement in resolve["locked_requirements"]
    }


def test_the_builder_and_plugin_locks_pin_the_same_libraries() -> None:
    imported = {
        "installer": installer.__version__,
        "packaging": packaging.__version__,
        # packaging 21.3 parses requirements and markers with it.
        "pyparsing": metadata.version("pyparsing"),
    }
    builder, plugin = _pins(BUILDER_LOCK), _pins(PLUGIN_LOCK)
    assert {name: builder.get(name) for name in imported} == imported
    assert {name: plugin.get(name) for name in imported} == imported
