from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from .__main__ import document_bytes, main
from .errors import SbomError
from .spdx import deb_purl, oci_purl, pypi_purl, spdx_document

MANIFEST = "sha256:" + "a" * 64
BASE_MANIFEST = "sha256:" + "b" * 64
CONFIG = "sha256:" + "c" * 64

PACKAGES: Dict[str, Any] = {
    "architecture": "amd64",
    "suite": "bookworm",
    "packages": [
        {
            "name": "libbz2-1.0",
            "version": "1.0.8-5+b1",
            "architecture": "amd64",
            "suite": "bookworm",
            "filename": "pool/main/b/bzip2/libbz2-1.0_1.0.8-5+b1_amd64.deb",
            "size": 47348,
            "sha256": "1" * 64,
            "source": "bzip2",
            "sourceVersion": "1.0.8-5",
            "maintainer": "Anibal Monsalve Salazar <anibal@debian.org>",
            "homepage": "https://sourceware.org/bzip2/",
            "copyright": "/usr/share/doc/libbz2-1.0/copyright",
            "licenses": ["BSD-variant", "GPL-2+"],
        },
        {
            "name": "tzdata",
            "version": "2025b-0+deb12u2",
            "architecture": "all",
            "suite": "bookworm-security",
            "filename": "pool/updates/main/t/tzdata/tzdata_2025b-0+deb12u2_all.deb",
            "size": 1,
            "sha256": "2" * 64,
            "source": "tzdata",
            "sourceVersion": "2025b-0+deb12u2",
            "maintainer": None,
            "homepage": None,
            "copyright": None,
            "licenses": [],
        },
    ],
}
INSTALLED: Dict[str, Any] = {
    "digest": "sha256:" + "d" * 64,
    "bytecode": None,
    "distributions": [
        {
            "project": "numpy",
            "version": "2.1.3",
            "wheel": "numpy-2.1.3-cp311-cp311-manylinux_2_17_x86_64.whl",
            "sha256": "3" * 64,
            "installedSize": 1,
            "notes": [],
            "distInfo": "opt/agent/lib/python3.11/site-packages/numpy-2.1.3.dist-info",
            "license": {
                "expression": None,
                "license": "Copyright (c) 2005-2024, NumPy Developers.\nAll rights reserved.",
                "classifiers": ["License :: OSI Approved :: BSD License"],
            },
        },
        {
            "project": "Typing_Extensions",
            "version": "4.12.2",
            "wheel": "typing_extensions-4.12.2-py3-none-any.whl",
            "sha256": "4" * 64,
            "installedSize": 1,
            "notes": [],
            "distInfo": "opt/agent/lib/python3.11/site-packages/typing_extensions-4.12.2.dist-info",
            "license": {
                "expression": None,
                "license": None,
                "classifiers": ["License :: OSI Approved :: Python Software Foundation License"],
            },
        },
    ],
}


def _spec(tmp_path: Path) -> Dict[str, Any]:
    (tmp_path / "packages.json").write_text(json.dumps(PACKAGES))
    (tmp_path / "installed.json").write_text(json.dumps(INSTALLED))
    wheels = [
        {
            "project": distribution["project"],
            "version": distribution["version"],
            "filename": distribution["wheel"],
            "url": f"https://files.pythonhosted.org/packages/xx/{distribution['wheel']}",
            "sha256": distribution["sha256"],
        }
        for distribution in INSTALLED["distributions"]
    ]
    return {
        "target": "agents/router:router",
        "repository": "registry.example.com/agents/router",
        "tags": ["1.4.0", "latest"],
        "digest": MANIFEST,
        "sourceDateEpoch": 1700000000,
        "tools": {"ai_agent": "0123456789ab", "pants": "2.17.1"},
        "plugin": {"sha256": "5" * 64, "files": 3},
        "locks": [
            {"path": "lockfiles/agents.lock", "sha256": "6" * 64},
            {"path": "lockfiles/debian-bookworm-python.lock.json", "sha256": "7" * 64},
        ],
        "provenance": str(tmp_path / "out/router.provenance.json"),
        "images": [
            {
                "platform": "linux/amd64",
                "manifest": MANIFEST,
                "config": CONFIG,
                "output": str(tmp_path / "out/router.spdx.json"),
                "base": {
                    "target": "agents/base:bookworm-python",
                    "kind": "debian",
                    "repository": "bookworm-python",
                    "manifest": BASE_MANIFEST,
                    "lock": {
                        "path": "lockfiles/debian-bookworm-python.lock.json",
                        "sha256": "7" * 64,
                    },
                },
                "debian": str(tmp_path / "packages.json"),
                "wheels": wheels,
                "installed": [str(tmp_path / "installed.json")],
                "files": [
                    {
                        "kind": "weights",
                        "path": "/models/router/router-centroids.npy",
                        "source": "router/router-centroids.npy",
                        "sha256": "8" * 64,
                        "size": 1234,
                    },
                    {
                        "kind": "code",
                        "path": "/opt/agent/app/router_agent/__main__.py",
                        "source": "router_agent/__main__.py",
                        "sha256": "9" * 64,
                        "size": 10,
                    },
                    {
                        "kind": "config",
                        "path": "/etc/ai-agent/agent.yaml",
                        "source": "agents/router/agent.yaml",
                        "sha256": "0" * 64,
                        "size": 5,
                    },
                ],
            }
        ],
    }


def validation_problems(document: Dict[str, Any]) -> List[str]:
    """What the SPDX project's own validator says of `document` (empty: valid SPDX 2.3)."""
    parsed = JsonLikeDictParser().parse(json.loads(json.dumps(document)))
    return [
        message.validation_message for message in validate_full_spdx_document(parsed, "SPDX-2.3")
    ]


def _document(tmp_path: Path) -> Dict[str, Any]:
    spec = _spec(tmp_path)
    return spdx_document(spec, spec["images"][0], lambda path: json.loads(Path(path).read_text()))


def _package(document: Dict[str, Any], spdx_id: str) -> Dict[str, Any]:
    (package,) = (package for package in document["packages"] if package["SPDXID"] == spdx_id)
    return package


def test_the_document_is_valid_spdx_2_3(tmp_path: Path) -> None:
    assert validation_problems(_document(tmp_path)) == []


def test_the_image_its_base_every_deb_wheel_and_file_with_relationships(tmp_path: Path) -> None:
    document = _document(tmp_path)
    ids = [package["SPDXID"] for package in document["packages"]]
    assert ids == [
        "SPDXRef-Image",
        "SPDXRef-Base",
        "SPDXRef-Deb-libbz2-1.0-amd64",
        "SPDXRef-Deb-tzdata-all",
        "SPDXRef-PyPI-numpy-2.1.3",
        "SPDXRef-PyPI-Typing-Extensions-4.12.2",
        # First-party files by image path.
        "SPDXRef-Config-1",
        "SPDXRef-Weights-1",
        "SPDXRef-Code-1",
    ]
    relationships = {
        (r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
        for r in document["relationships"]
    }
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image") in relationships
    assert ("SPDXRef-Image", "DESCENDANT_OF", "SPDXRef-Base") in relationships
    assert ("SPDXRef-Base", "CONTAINS", "SPDXRef-Deb-tzdata-all") in relationships
    for element in ids[2:]:
        assert ("SPDXRef-Image", "CONTAINS", element) in relationships
    image = _package(document, "SPDXRef-Image")
    assert image["checksums"] == [{"algorithm": "SHA256", "checksumValue": "a" * 64}]
    assert image["primaryPackagePurpose"] == "CONTAINER"
    base = _package(document, "SPDXRef-Base")
    assert base["checksums"][0]["checksumValue"] == "b" * 64
    deb = _package(document, "SPDXRef-Deb-libbz2-1.0-amd64")
    assert deb["versionInfo"] == "1.0.8-5+b1"
    assert deb["checksums"][0]["checksumValue"] == "1" * 64
    assert deb["externalRefs"][0]["referenceLocator"] == (
        "pkg:deb/debian/libbz2-1.0@1.0.8-5%2Bb1?arch=amd64&distro=bookworm"
    )
    assert deb["sourceInfo"] == "built from the Debian source package bzip2 1.0.8-5"
    assert deb["licenseDeclared"] == "LicenseRef-Debian-BSD-variant AND GPL-2.0-or-later"
    assert deb["downloadLocation"].startswith("https://deb.debian.org/debian/pool/main/b/bzip2/")
    tzdata = _package(document, "SPDXRef-Deb-tzdata-all")
    assert tzdata["licenseDeclared"] == "NOASSERTION"
    assert tzdata["downloadLocation"].startswith("https://deb.debian.org/debian-security/pool/")
    numpy = _package(document, "SPDXRef-PyPI-numpy-2.1.3")
    assert numpy["checksums"][0]["checksumValue"] == "3" * 64
    assert numpy["externalRefs"][0]["referenceLocator"] == "pkg:pypi/numpy@2.1.3"
    assert numpy["licenseDeclared"] == "LicenseRef-PyPI-numpy"
    assert (
        _package(document, "SPDXRef-PyPI-Typing-Extensions-4.12.2")["licenseDeclared"] == "PSF-2.0"
    )
    weights = _package(document, "SPDXRef-Weights-1")
    assert weights["packageFileName"] == "/models/router/router-centroids.npy"
    assert weights["checksums"][0]["checksumValue"] == "8" * 64
    assert "1234 bytes" in weights["comment"]
    extracted = {info["licenseId"]: info for info in document["hasExtractedLicensingInfos"]}
    assert extracted["LicenseRef-PyPI-numpy"]["extractedText"].startswith("Copyright (c) 2005")


def test_no_clock_and_the_same_bytes_for_the_same_spec(tmp_path: Path) -> None:
    first = document_bytes(_document(tmp_path))
    assert document_bytes(_document(tmp_path)) == first
    document = json.loads(first)
    assert document["creationInfo"]["created"] == "2023-11-14T22:13:20Z"
    assert document["documentNamespace"].startswith("https://spdx.org/spdxdocs/ai-agent/")


def test_the_validator_is_real(tmp_path: Path) -> None:
    document = _document(tmp_path)
    document["packages"][2]["licenseDeclared"] = "Not-A-Licence"
    document["packages"][3]["checksums"][0]["checksumValue"] = "xyz"
    assert len(validation_problems(document)) >= 2


def test_a_base_image_alone_contains_its_packages(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    image = {**spec["images"][0], "base": None, "wheels": [], "installed": [], "files": []}
    document = spdx_document(spec, image, lambda path: json.loads(Path(path).read_text()))
    assert validation_problems(document) == []
    relationships = {
        (r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
        for r in document["relationships"]
    }
    assert ("SPDXRef-Image", "CONTAINS", "SPDXRef-Deb-libbz2-1.0-amd64") in relationships
    assert not any(kind == "DESCENDANT_OF" for _, kind, _ in relationships)


def test_a_wheel_no_layer_step_installed_is_an_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    image = {**spec["images"][0], "installed": []}
    with pytest.raises(SbomError, match="no wheel layer step says it installed it"):
        spdx_document(spec, image, lambda path: json.loads(Path(path).read_text()))


def test_purls() -> None:
    assert pypi_purl("Typing_Extensions", "4.12.2") == "pkg:pypi/typing-extensions@4.12.2"
    assert deb_purl("libc6", "1:2.36-9", "amd64", "bookworm") == (
        "pkg:deb/debian/libc6@1%3A2.36-9?arch=amd64&distro=bookworm"
    )
    assert oci_purl("registry.example.com/agents/router", MANIFEST, "1.4.0") == (
        f"pkg:oci/router@sha256%3A{'a' * 64}"
        "?repository_url=registry.example.com/agents/router&tag=1.4.0"
    )


def test_the_write_command_writes_every_document(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["write", "--spec", str(tmp_path / "spec.json")]) == 0
    spdx = json.loads((tmp_path / "out/router.spdx.json").read_text())
    assert validation_problems(spdx) == []
    statement = json.loads((tmp_path / "out/router.provenance.json").read_text())
    assert statement["subject"] == [
        {"name": "registry.example.com/agents/router", "digest": {"sha256": "a" * 64}}
    ]


def test_a_malformed_spec_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "spec.json").write_text("{}")
    assert main(["write", "--spec", str(tmp_path / "spec.json")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
