"""`check-locks`: which locks the given targets use (each base's, the bases of the agents, each
agent resolve's once) and how a missing one is reported; asking the servers about the pins of an
existing lock is tests/plugin/test_check_locks.py's (it needs them)."""

from __future__ import annotations

import pytest
from pants.testutil.rule_runner import RuleRunner

from ai_agent.goals.check_locks import CheckLocks, NoLocksToCheck
from ai_agent.testutil import (
    CaseDir,
    assert_message,
    raised,
    run_goal,
)

# The `unlocked` resolve's lock does not exist (testutil): nothing here reaches a server.
SOURCES = 'python_sources(name="src", sources=["app/*.py"], resolve="unlocked")\n'


@pytest.fixture
def case(case: CaseDir) -> CaseDir:
    case.write({"agent.yaml": "name: agent\n", "app/__main__.py": ""})
    return case


def test_missing_locks_are_named_with_their_refresh_commands(
    rule_runner: RuleRunner, case: CaseDir
) -> None:
    case.write(
        {
            "BUILD": SOURCES
            + 'debian_base(name="deb-missing")\n'
            + 'ai_agent(name="agent", entry_point="app", dependencies=[":src"],'
            ' resolve="unlocked", base=":deb-missing")\n'
            + 'ai_agent(name="twin", entry_point="app", dependencies=[":src"],'
            ' resolve="unlocked", base=":deb-missing")\n'
        }
    )
    result = run_goal(rule_runner, CheckLocks, f"{case.path}:agent", f"{case.path}:twin")
    assert result.exit_code == 1, result.stdout
    lines = result.stdout.splitlines()
    # The agents' base (named by their `base` field, not given itself), then their resolve's
    # lock once for both.
    assert lines == [
        f"✕ {case.address('deb-missing')}: lockfiles/debian-deb-missing.lock.json does not exist;"
        " create it with `pants generate-lockfiles --resolve=deb-missing`",
        f"✕ {case.address()}, {case.address('twin')}: lockfiles/unlocked.lock does not exist;"
        " create it with `pants generate-lockfiles --resolve=unlocked`",
        "Checked 0 pinned items in 2 locks: 2 gone or missing, 0 served with another size,"
        " 0 unreachable.",
    ]


def test_targets_without_locks_are_an_error(rule_runner: RuleRunner, case: CaseDir) -> None:
    case.write({"BUILD": SOURCES})
    error = raised(NoLocksToCheck, run_goal, rule_runner, CheckLocks, f"{case.path}:src")
    assert_message(
        error,
        "No locks among the given targets: `check-locks` checks the locks of `debian_base`,"
        " `oci_base` and `ai_agent` targets (e.g. `./pants check-locks ::`).",
    )
