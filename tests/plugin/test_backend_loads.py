"""The plugin loads as a Pants backend in a repo configured like this one."""

import pytest

from testkit.pants_repo import ScratchRepo


@pytest.mark.integration
def test_backend_loads_in_a_scratch_repo(scratch_repo: ScratchRepo) -> None:
    scratch_repo.write({"BUILD": ""})
    result = scratch_repo.run("help", "backends")
    assert result.returncode == 0, result.stderr
    assert "[*] ai_agent" in result.stdout
