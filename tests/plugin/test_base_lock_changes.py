"""`--changed-since` sees a base's lock: editing it marks that base (and so every image built on
it) as changed, and no other base. Runs Pants and git in a scratch repo."""

from __future__ import annotations

import subprocess

import pytest

from testkit.components import require_binary
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

LOCK = "lockfiles/debian-bookworm-python.lock.json"


def test_editing_a_lock_changes_only_its_base(scratch_repo: ScratchRepo) -> None:
    git = require_binary("git", "git")
    scratch_repo.write(
        {
            "base/BUILD": (
                f'debian_base(name="py", lockfile="{LOCK}")\n'
                'debian_base(name="other", variant="shell")\n'
            ),
            # Its content does not matter to `list`; it only has to exist, like any real lock.
            "lockfiles/debian-other.lock.json": "{}\n",
        }
    )
    for command in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "base"],
    ):
        subprocess.run([git, *command], cwd=scratch_repo.root, check=True)
    lock = scratch_repo.root / LOCK
    lock.write_text(lock.read_text() + "\n")

    result = scratch_repo.run("--changed-since=HEAD", "--changed-dependents=transitive", "list")
    assert result.returncode == 0, result.stderr
    changed = set(result.stdout.split())
    assert "base:py" in changed
    assert "base:other" not in changed
