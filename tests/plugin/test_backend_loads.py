"""The plugin loads as a Pants backend in a repo configured like this one."""

import pytest

from testkit.pants_repo import ScratchRepo


@pytest.mark.integration
def test_backend_loads_in_a_scratch_repo(scratch_repo: ScratchRepo) -> None:
    scratch_repo.write({"BUILD": ""})
    result = scratch_repo.run("help", "backends")
    assert result.returncode == 0, result.stderr
    assert "[*] ai_agent" in result.stdout


@pytest.mark.integration
def test_ai_agent_help_documents_every_field(scratch_repo: ScratchRepo) -> None:
    scratch_repo.write({"BUILD": ""})
    result = scratch_repo.run("help", "ai_agent")
    assert result.returncode == 0, result.stderr
    fields = [
        "dependencies", "entry_point", "command", "base", "accelerator", "resolve", "env",
        "ports", "user", "workdir", "labels", "weights", "weights_dir", "agent_config",
        "repository", "image_tags", "platforms", "output_path",
    ]  # fmt: skip
    for field in fields:
        assert f"\n{field}\n" in result.stdout, f"`{field}` missing from `help ai_agent`"
    # The agent.yaml schema is part of the `agent_config` help.
    assert "healthcheck" in result.stdout and "resources" in result.stdout
