"""`./pants verify-reproducible`: with the plugin as it is, an agent's every build step, run again
without caches, gives the same bytes; with a copy of the plugin whose layer writer stamps entries
with the clock (the classic reproducibility bug), the goal fails and names the step, the file and
the first differing tar entry and field, and nothing else.

Real components: Pants 2.17 with this plugin (no pantsd) against a scratch repo holding the real
pants.toml and lockfiles; the agent's Debian base comes from deb.debian.org on a cold cache (the
goal fetches its .debs again). No dockerd.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import ai_agent
from testkit.pants_repo import AGENTS_SKELETON, ScratchRepo

pytestmark = pytest.mark.integration

AGENT = "agents/tiny:agent"
FILES = {
    **AGENTS_SKELETON,
    "agents/tiny/BUILD": """\
python_sources(name="src", sources=["tiny_agent/*.py"])
ai_agent(name="agent", entry_point="tiny_agent", dependencies=[":src"])
""",
    "agents/tiny/tiny_agent/__main__.py": 'print("tiny")\n',
    "agents/tiny/agent.yaml": "name: tiny\n",
}
# In the OCI core's layer spec reading: the one mtime every entry gets, from the spec.
FIXED_MTIME = 'mtime=spec.get("source_date_epoch", int, DEFAULT_MTIME),'
CLOCK_MTIME = 'mtime=__import__("time").time_ns() // 1000 % 10**9,'


def _output(result: subprocess.CompletedProcess) -> str:
    return f"{result.stdout}\n{result.stderr}"


def test_an_agent_built_by_the_plugin_is_reproducible(tmp_path: Path) -> None:
    repo = ScratchRepo.create(tmp_path / "repo")
    repo.write(FILES)
    result = repo.run("verify-reproducible", AGENT)
    assert result.returncode == 0, _output(result)
    # Base fetch and layer, code, config, the image's description, archive, the SBOM step and
    # the description of the Debian base packaged alone that it reads its digest from.
    assert re.search(
        rf"^✓ {AGENT}: sha256:[0-9a-f]{{64}} is reproducible: its 8 build steps, run again"
        " without caches, gave the same bytes$",
        result.stdout,
        re.MULTILINE,
    ), _output(result)
    assert "Again, without caches: Writing the code layer" in result.stderr, result.stderr


def test_a_layer_writer_that_stamps_the_clock_is_caught_and_named(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    shutil.copytree(
        Path(ai_agent.__file__).resolve().parent,
        plugins / "ai_agent",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    layer_command = plugins / "ai_agent/oci/spec.py"
    source = layer_command.read_text()
    assert source.count(FIXED_MTIME) == 1
    layer_command.write_text(source.replace(FIXED_MTIME, CLOCK_MTIME))
    repo = ScratchRepo.create(tmp_path / "repo", plugins_dir=plugins)
    repo.write(FILES)

    result = repo.run("verify-reproducible", AGENT)
    output = _output(result)
    assert result.returncode == 1, output
    assert re.search(
        rf"^✕ {AGENT}: sha256:[0-9a-f]{{64}} is NOT reproducible: 2 of its 8 build steps gave"
        " other bytes when run again without caches:$",
        result.stdout,
        re.MULTILINE,
    ), output
    drifted = re.findall(r"^  (\S.*):$", result.stdout, re.MULTILINE)
    # The two `layer` steps, and not the Debian base, the description, the archive or the SBOM
    # (same inputs, same bytes).
    assert sorted(drifted) == [
        "Writing the code layer (tiny_agent (1 files))",
        "Writing the config layer (/etc/ai-agent/agent.yaml)",
    ], output
    mtime = r"mtime \d+ in the cached build, \d+ in the rebuild"
    for layer in ("code", "config"):
        assert re.search(
            rf"^    layers/{layer}/layer\.tar\.gz: tar entry \S+: {mtime}$",
            result.stdout,
            re.MULTILINE,
        ), output
