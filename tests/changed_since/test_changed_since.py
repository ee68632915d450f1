"""Incremental CI: `./pants --changed-since=<rev> --changed-dependents=transitive package` builds
exactly the agents a change affects. A change to the shared model code or to the shared weights
builds every agent that uses them (both router variants and triage), a change to one agent's code
builds only that agent, and an agent that shares neither (`agents/echo`, written here, with its own
code and weights) is built only for a change of its own.

How a CI uses it: a pull request's job, with the target branch fetched, runs
`./pants --changed-since=origin/main --changed-dependents=transitive package` (add `publish` to
push what it built: agents it did not select are neither built nor pushed). Pants asks git for the
files changed in `origin/main...HEAD` (since the merge base, so commits that landed on main
meanwhile do not count) plus uncommitted and untracked ones, maps them to their owning targets and
those targets' transitive dependents, and `package` builds the packageable ones. Each case here
does the same in a git scratch repo whose root (pants.toml) is the worktree's root: from a clean
worktree at the base commit, commit one change and run with `--changed-since=HEAD~1`.

What was built is read from the run itself: `package` prints one line per agent
(`<address>: sha256:<digest> (N layers, ...`), whose addresses must be the expected set, and
dist/ (emptied before each case) must hold exactly those agents' archives and metadata, so anything
else packageable that a change selected fails the test. The Debian base is one: it is a dependency
of every agent, never a dependent, so only a change to the base itself (its BUILD or lock) selects
it, and then every agent with it; no case here does. `list` in the same run cross-checks: the
packageable targets it lists are the ones built.

Real components: Pants 2.17 with this plugin (no pantsd) and git, against a scratch repo holding
the real example agents, pants.toml and lockfiles. On a cold cache (~/.cache/pants) the first build
downloads the agents' locked wheels from PyPI and the base's .debs from deb.debian.org (CI, see
`.ci/run`, has both). No dockerd.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from typing import Any, FrozenSet, List, Mapping, Tuple

import pytest

from testkit.components import require_binary
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

ROUTER = frozenset({"agents/router@accelerator=cpu", "agents/router@accelerator=cuda12.4"})
TRIAGE = "agents/triage:triage"
ECHO = "agents/echo:echo"
BASE = "agents/base:bookworm-python"
# Every packageable target of the scratch repo.
PACKAGEABLE = ROUTER | {TRIAGE, ECHO, BASE}

# An agent sharing nothing with the examples but their base: its own code and its own weights.
ECHO_FILES = {
    "agents/echo/BUILD": """\
python_sources(name="src", sources=["echo_agent/*.py"])
resource(name="weights", source="echo_weights/prefix.txt")
ai_agent(name="echo", entry_point="echo_agent", dependencies=[":src"], weights=[":weights"])
""",
    "agents/echo/agent.yaml": "name: echo\nmodels:\n  - echo_weights/prefix.txt\n",
    "agents/echo/echo_agent/__init__.py": "",
    "agents/echo/echo_agent/__main__.py": """\
import pathlib
import sys

PREFIX = pathlib.Path("/models/echo_weights/prefix.txt").read_text().strip()
for line in sys.stdin:
    print(PREFIX, line, end="")
""",
    "agents/echo/echo_weights/prefix.txt": "echo:\n",
}
# What a real repo ignores: Pants counts untracked files as changed.
GITIGNORE = {".gitignore": "/dist/\n/.pants.d/\n"}

_SUMMARY = re.compile(r"^\s*(\S+): sha256:[0-9a-f]{64} \(\d+ layers, ", re.MULTILINE)


@dataclass(frozen=True)
class Change:
    """One commit on top of the base: `appended` added to the end of the file at `path`."""

    path: str
    appended: str
    expected: FrozenSet[str]


CHANGES = {
    "shared_model_code": Change(
        "agents/models/router_model/featurize.py", "# changed\n", ROUTER | {TRIAGE}
    ),
    "one_agents_code": Change("agents/router/router_agent/server.py", "# changed\n", ROUTER),
    # Still the same JSON: the build ships weights as bytes, and git sees the change.
    "shared_weights": Change("agents/models/router/router-labels.json", "\n", ROUTER | {TRIAGE}),
    "unshared_agents_code": Change(
        "agents/echo/echo_agent/__main__.py", "# changed\n", frozenset({ECHO})
    ),
}


@dataclass(frozen=True)
class GitRepo:
    """The scratch repo as a git repo; its base commit is tagged `base`."""

    repo: ScratchRepo
    git: str

    def run_git(self, *args: str) -> None:
        result = subprocess.run(
            [self.git, *args], cwd=self.repo.root, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"git {' '.join(args)}:\n{result.stdout}{result.stderr}"


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    repo = ScratchRepo.with_example_agents(tmp_path_factory.mktemp("changed") / "repo")
    repo.write({**ECHO_FILES, **GITIGNORE})
    git_repo = GitRepo(repo, require_binary("git", "git"))
    git_repo.run_git("init", "--quiet", "--initial-branch=main")
    for key, value in (
        ("user.name", "CI"),
        ("user.email", "ci@example.com"),
        ("commit.gpgsign", "false"),
    ):
        git_repo.run_git("config", "--local", key, value)
    git_repo.run_git("add", "--all")
    git_repo.run_git("commit", "--quiet", "--message", "base")
    git_repo.run_git("tag", "base")
    return git_repo


@pytest.fixture
def clean_base(git_repo: GitRepo) -> GitRepo:
    """The repo at its base commit with a clean worktree and no dist/ (as a fresh CI checkout)."""
    git_repo.run_git("reset", "--quiet", "--hard", "base")
    git_repo.run_git("clean", "--quiet", "-d", "--force", "-x")
    return git_repo


def _listed_and_built(repo: ScratchRepo) -> Tuple[FrozenSet[str], FrozenSet[str], str]:
    """Run `list package` on what changed since HEAD~1; return the listed addresses, those of the
    agents `package` printed a summary line for, and the run's output."""
    result = repo.run(
        "--changed-since=HEAD~1", "--changed-dependents=transitive", "list", "package"
    )
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    summaries = _SUMMARY.findall(result.stderr)
    assert len(summaries) == len(set(summaries)), output
    return frozenset(result.stdout.split()), frozenset(summaries), output


def _supply_chain_documents(metadata: Mapping[str, Any]) -> List[str]:
    """The SBOMs and provenance the metadata names, relative to dist/."""
    return [*metadata["sbom"]["spdx"], metadata["sbom"]["provenance"]]


def _dist_targets(repo: ScratchRepo) -> FrozenSet[str]:
    """The agents whose archive, OCI layout, SBOM, provenance and metadata dist/ holds (a base's
    metadata, which names no target, by its path); fails on any other file there."""
    dist = repo.root / "dist"
    files = sorted(path for path in dist.rglob("*") if path.is_file()) if dist.is_dir() else []
    metadata = [path for path in files if path.name.endswith(".tar.json")]
    archives = {path.with_name(path.name[: -len(".json")]) for path in metadata}
    in_layout = {path for path in files if dist / "oci" in path.parents}
    sboms = {
        dist / document
        for path in metadata
        for document in _supply_chain_documents(json.loads(path.read_text()))
    }
    lock = {dist / ".ai-agent/layout.lock"} & set(files)  # held by each image's export
    assert set(files) == set(metadata) | archives | in_layout | sboms | lock, files
    # The layout holds the image of every metadata file there, and nothing else.
    index = json.loads((dist / "oci/index.json").read_text()) if in_layout else {"manifests": []}
    named = {
        entry["annotations"]["org.opencontainers.image.ref.name"] for entry in index["manifests"]
    }
    assert named == {
        name for path in metadata for name in json.loads(path.read_text())["layout"]["refNames"]
    }, files
    return frozenset(
        json.loads(path.read_text()).get("target", str(path.relative_to(dist))) for path in metadata
    )


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_changed_since_packages_exactly_the_affected_agents(
    clean_base: GitRepo, change: Change
) -> None:
    repo = clean_base.repo
    with (repo.root / change.path).open("a") as file:
        file.write(change.appended)
    clean_base.run_git("commit", "--quiet", "--all", "--message", f"change {change.path}")

    listed, built, output = _listed_and_built(repo)
    assert built == change.expected, output
    assert _dist_targets(repo) == change.expected, output
    assert listed & PACKAGEABLE == change.expected, output
