"""Incremental `./pants package` of an `ai_agent`: after a first-party source edit, the only layer
process that executes is the code layer's (then the image archive), every other layer comes from
Pants' local process cache with the same digest, and a rebuild without a change executes none.

Real components: Pants 2.17 with this plugin (no pantsd, so reuse comes from the local cache in
~/.cache/pants, not from memoization) against a scratch repo holding the real pants.toml and
lockfiles. On a cold cache the first build downloads numpy's locked wheel from PyPI and the Debian
base's .debs from deb.debian.org. No dockerd.

Which processes executed is read from `--keep-sandboxes=always`, which logs
`Preserving local process execution dir <dir> for <description>` for every process that runs
(cache hits run nothing); the sandboxes go to the test's temporary directory.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest

from testkit.pants_output import builder_processes, executed_processes, succeeded
from testkit.pants_repo import AGENTS_SKELETON, ScratchRepo

pytestmark = pytest.mark.integration

AGENT = "agents/inc:agent"
METADATA = "dist/agents.inc/agent.tar.json"
ARCHIVE_PROCESS = f"Writing the image archive for {AGENT}"
CODE_PROCESS = "Writing the code layer ("
SBOM_PROCESS = f"Writing the SBOM and provenance of {AGENT}"

FILES = {
    **AGENTS_SKELETON,
    # Pinned by the agents lock (numpy 2.2.6), so the image has a packages layer.
    "3rdparty/BUILD": (
        'python_requirement(name="numpy", requirements=["numpy>=1.26,<2.3"], resolve="agents")\n'
    ),
    "agents/inc/BUILD": """\
python_sources(name="src", sources=["inc_agent/*.py"])
resource(name="weights", source="w/small.bin")
ai_agent(name="agent", entry_point="inc_agent", dependencies=[":src"], weights=[":weights"])
""",
    "agents/inc/inc_agent/__main__.py": 'import numpy\n\nprint("inc", numpy.__version__)\n',
    "agents/inc/agent.yaml": "name: inc\nmodels:\n  - w/small.bin\n",
    "agents/inc/w/small.bin": "small weights\n",
}


def _layers(repo: ScratchRepo) -> List[Dict[str, Any]]:
    metadata = json.loads((repo.root / METADATA).read_text())
    (image,) = metadata["images"]
    return image["layers"]


def test_code_edit_rebuilds_only_the_code_layer(tmp_path: Path) -> None:
    repo = ScratchRepo.create(tmp_path / "repo")
    repo.write(FILES)
    succeeded(repo.run("package", AGENT))
    first = _layers(repo)
    assert [layer["kind"] for layer in first] == ["base", "packages", "weights", "code", "config"]

    # Unique every time, so that no earlier run of this test left the edited code layer cached.
    with (repo.root / "agents/inc/inc_agent/__main__.py").open("a") as source:
        source.write(f"# edited {uuid.uuid4().hex}\n")
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()
    keep = ("--keep-sandboxes=always", f"--local-execution-root-dir={sandboxes}")
    edited = repo.run(*keep, "package", AGENT)
    succeeded(edited)
    ran = builder_processes(edited)
    shown = f"executed: {executed_processes(edited)}"
    # The code layer, then what describes the image: its SBOM (which lists the code's files) and
    # its archive.
    assert len(ran) == 3, shown
    assert [name for name in ran if name.startswith(CODE_PROCESS)], shown
    assert SBOM_PROCESS in ran and ARCHIVE_PROCESS in ran, shown
    for cached in (
        "Installing ",
        "Grouping the ",
        "Fetching",
        "Writing the weights layer",
        "Writing the config layer",
        "Choosing the locked wheels",
        "Writing the Debian base layer",
    ):
        assert not any(name.startswith(cached) for name in executed_processes(edited)), shown

    second = _layers(repo)
    assert [layer["kind"] for layer in second] == [layer["kind"] for layer in first]
    for before, after in zip(first, second):
        if before["kind"] == "code":
            assert before["digest"] != after["digest"]
        else:
            assert before == after
    second_metadata = (repo.root / METADATA).read_text()

    unchanged = repo.run(*keep, "package", AGENT)
    succeeded(unchanged)
    assert builder_processes(unchanged) == [], f"executed: {executed_processes(unchanged)}"
    assert (repo.root / METADATA).read_text() == second_metadata
