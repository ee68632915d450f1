"""The SBOM and provenance of the example images (router in both variants, triage, and their
base), as `package` writes them beside each image in a scratch repo: valid SPDX 2.3 (spdx-tools),
every file of every layer accounted for, the same bytes on a second run, and the image digests
unchanged by them. Needs no Docker: the layers are read from the OCI layouts in dist/.

Needs the network to PyPI (the agents lock's wheels) and deb.debian.org (the base's .debs), as
`tests/agents` does. The torch classifier's image is checked in `tests/torch_agent`, the only
test that builds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict

import pytest

from testkit.pants_output import succeeded
from testkit.pants_repo import ScratchRepo
from testkit.sbom import check_image_supply_chain

pytestmark = pytest.mark.integration

TARGETS = ("agents/router::", "agents/triage::", "agents/base::")
IMAGES = (
    "agents.router/router@accelerator=cpu",
    "agents.router/router@accelerator=cuda12_4",
    "agents.triage/triage",
    "agents.base/bookworm-python",
)


@dataclass(frozen=True)
class Built:
    repo: ScratchRepo
    output: str

    @property
    def dist(self) -> Path:
        return self.repo.root / "dist"

    def metadata(self, image: str) -> Dict:
        return json.loads((self.dist / f"{image}.tar.json").read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    repo = ScratchRepo.with_example_agents(tmp_path_factory.mktemp("sbom") / "repo")
    return Built(repo, succeeded(repo.run("package", *TARGETS)))


@pytest.mark.parametrize("image", IMAGES)
def test_every_byte_of_the_image_is_accounted_for_by_a_valid_sbom(built: Built, image: str) -> None:
    reports = check_image_supply_chain(built.dist, built.dist / f"{image}.tar.json")
    (report,) = reports.values()
    assert report["owners"]["deb"] > 3000
    if image != "agents.base/bookworm-python":
        assert report["owners"]["wheel"] > 500
        assert {"weights", "code", "config"} <= set(report["owners"])


def test_package_prints_where_the_sbom_is(built: Built) -> None:
    for image in IMAGES:
        metadata = built.metadata(image)
        (spdx,) = metadata["sbom"]["spdx"]
        assert spdx == f"{image}.spdx.json"
        assert metadata["sbom"]["provenance"] == f"{image}.provenance.json"
        assert f"SBOM in dist/{spdx}, provenance in dist/{image}.provenance.json" in built.output


def test_the_sbom_names_the_base_every_package_and_the_locks(built: Built) -> None:
    router = json.loads((built.dist / f"{IMAGES[0]}.spdx.json").read_text())
    base_metadata = built.metadata("agents.base/bookworm-python")
    packages = {package["SPDXID"]: package for package in router["packages"]}
    base = packages["SPDXRef-Base"]
    assert f"sha256:{base['checksums'][0]['checksumValue']}" == base_metadata["digest"]
    lock = json.loads((built.repo.root / "lockfiles/debian-bookworm-python.lock.json").read_text())
    debs = {p["name"]: p for p in router["packages"] if p["SPDXID"].startswith("SPDXRef-Deb-")}
    assert sorted(debs) == sorted(package["name"] for package in lock["packages"]["amd64"])
    for pinned in lock["packages"]["amd64"]:
        assert debs[pinned["name"]]["checksums"][0]["checksumValue"] == pinned["sha256"]
    numpy = next(p for p in router["packages"] if p["name"] == "numpy")
    assert numpy["externalRefs"][0]["referenceLocator"].startswith("pkg:pypi/numpy@")
    assert numpy["downloadLocation"].startswith("https://files.pythonhosted.org/")
    statement = json.loads((built.dist / f"{IMAGES[0]}.provenance.json").read_text())
    dependencies = {
        d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    }
    for path in ("lockfiles/agents.lock", "lockfiles/debian-bookworm-python.lock.json"):
        assert dependencies[path]["digest"]["sha256"] == next(
            lock["sha256"] for lock in built.metadata(IMAGES[0])["locks"] if lock["path"] == path
        )


def test_a_second_package_writes_the_same_sbom_bytes(built: Built) -> None:
    before = {path: path.read_bytes() for path in sorted(built.dist.glob("*/*.json"))}
    output = succeeded(built.repo.run("package", *TARGETS))
    assert "Wrote" not in output
    assert {path: path.read_bytes() for path in sorted(built.dist.glob("*/*.json"))} == before
