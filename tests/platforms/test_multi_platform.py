"""An agent for two platforms through Pants: a `debian_base` locked for amd64 and arm64 and an
agent with `platforms=["linux/amd64", "linux/arm64"]` give one archive holding an image index,
whose arm64 image carries the aarch64 numpy wheel and the arm64 base, and whose amd64 image is
byte for byte the one a single-platform build gives; going from two platforms to one and back
leaves only the current SPDX documents in dist/. Needs deb.debian.org (the arm64 lock and
.debs, gpgv) and PyPI (both numpy wheels)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from testkit.pants_output import succeeded
from testkit.pants_repo import AGENTS_SKELETON, ScratchRepo

pytestmark = pytest.mark.integration

AGENT_BUILD = """\
python_sources(name="src", sources=["two/*.py"])
ai_agent(name="agent", entry_point="two", dependencies=[":src"]{platforms})
"""
FILES = {
    **AGENTS_SKELETON,
    "agents/base/BUILD": 'debian_base(name="bookworm-python", architectures=["amd64", "arm64"])\n',
    "3rdparty/BUILD": (
        'python_requirement(name="numpy", requirements=["numpy>=1.26,<2.3"], resolve="agents")\n'
    ),
    "agents/two/two/__main__.py": 'import numpy\n\nprint("two", numpy.__version__)\n',
    "agents/two/agent.yaml": "name: two\n",
}
METADATA = "dist/agents.two/agent.tar.json"


def _package(repo: ScratchRepo, platforms: str) -> Dict[str, Any]:
    repo.write({"agents/two/BUILD": AGENT_BUILD.format(platforms=platforms)})
    succeeded(repo.run("package", "agents/two:agent"))
    return dict(json.loads((repo.root / METADATA).read_text()))


def _spdx_files(repo: ScratchRepo) -> List[str]:
    dist = repo.root / "dist"
    return sorted(str(path.relative_to(dist)) for path in dist.glob("agents.two/*.spdx.json"))


def test_two_platforms_give_an_index_of_per_platform_images(tmp_path: Path) -> None:
    repo = ScratchRepo.create(tmp_path / "repo")
    repo.write(FILES)
    succeeded(repo.run("generate-lockfiles", "--resolve=bookworm-python"))

    both = _package(repo, ', platforms=["linux/amd64", "linux/arm64"]')
    assert both["mediaType"] == "application/vnd.oci.image.index.v1+json"
    images = {image["platform"]: image for image in both["images"]}
    assert list(images) == ["linux/amd64", "linux/arm64/v8"]
    amd64, arm64 = images["linux/amd64"], images["linux/arm64/v8"]
    layers = {
        name: {layer["kind"]: layer for layer in image["layers"]} for name, image in images.items()
    }
    # Per platform: its own base and wheels; shared: the code and config.
    for kind in ("base", "packages"):
        assert layers["linux/amd64"][kind]["digest"] != layers["linux/arm64/v8"][kind]["digest"]
    for kind in ("code", "config"):
        assert layers["linux/amd64"][kind]["digest"] == layers["linux/arm64/v8"][kind]["digest"]
    assert layers["linux/arm64/v8"]["packages"]["holds"] == "numpy 2.2.6"
    # Docker loads the first platform.
    assert both["docker"]["imageID"] == amd64["imageID"]
    assert arm64["imageID"] != amd64["imageID"]

    # One SBOM per platform.
    assert (
        _spdx_files(repo)
        == sorted(both["sbom"]["spdx"])
        == [
            "agents.two/agent.linux-amd64.spdx.json",
            "agents.two/agent.linux-arm64-v8.spdx.json",
        ]
    )

    single = _package(repo, "")
    assert single["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert single["digest"] == amd64["manifest"]["digest"]
    # Back to one platform: one SBOM, and the two of before are gone.
    assert _spdx_files(repo) == single["sbom"]["spdx"] == ["agents.two/agent.spdx.json"]
    both_again = _package(repo, ', platforms=["linux/amd64", "linux/arm64"]')
    assert _spdx_files(repo) == sorted(both_again["sbom"]["spdx"])
