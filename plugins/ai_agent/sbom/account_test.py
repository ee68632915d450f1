from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Mapping

import pytest

from .__main__ import main
from .account import account_layers

INIT = b"print('hello')\n"
WEIGHTS = b"\x00weights\x01"
RECORD = (
    "pkg/__init__.py,sha256="
    + base64.urlsafe_b64encode(hashlib.sha256(INIT).digest()).decode().rstrip("=")
    + f",{len(INIT)}\n"
    "pkg/__pycache__/__init__.cpython-311.pyc,,\n"
    "pkg-1.0.dist-info/RECORD,,\n"
    "../../../bin/pkg-tool,,\n"
)


def _layer(path: Path, files: Mapping[str, Any]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):  # ("link", target)
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                archive.addfile(info)
                continue
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return path


def _layers(tmp_path: Path, extra: Mapping[str, Any] = {}) -> List[Path]:
    tool = b"#!/opt/agent/bin/python3.11\n"
    base = {
        "var/lib/dpkg/info/foo.list": b"/.\n/bin\n/bin/foo\n/usr/share/doc/foo/copyright\n",
        "var/lib/dpkg/info/foo.md5sums": (f"{hashlib.md5(b'foo').hexdigest()}  bin/foo\n".encode()),
        "var/lib/dpkg/status": b"Package: foo\n",
        "usr/bin/foo": b"foo",
        "usr/share/doc/foo/copyright": b"c",
        "etc/passwd": b"root:x:0:0::/:/sbin/nologin\n",
        "bin": ("link", "usr/bin"),
    }
    site = "opt/agent/lib/python3.11/site-packages"
    wheels = {
        f"{site}/pkg/__init__.py": INIT,
        f"{site}/pkg/__pycache__/__init__.cpython-311.pyc": b"pyc",
        f"{site}/pkg-1.0.dist-info/RECORD": RECORD.encode(),
        "opt/agent/bin/pkg-tool": tool,
        "opt/agent/pyvenv.cfg": b"home = /usr/bin\n",
        "opt/agent/bin/python3.11": ("link", "/usr/bin/python3.11"),
    }
    own = {"models/m.bin": WEIGHTS, **extra}
    return [
        _layer(tmp_path / "base.tar.gz", base),
        _layer(tmp_path / "wheels.tar.gz", wheels),
        _layer(tmp_path / "own.tar.gz", own),
    ]


def _document() -> Dict[str, Any]:
    return {
        "packages": [
            {"SPDXID": "SPDXRef-Image", "name": "x", "checksums": [{"checksumValue": "a" * 64}]},
            {"SPDXID": "SPDXRef-Deb-foo-amd64", "name": "foo"},
            {"SPDXID": "SPDXRef-PyPI-pkg-1.0", "name": "pkg", "versionInfo": "1.0"},
            {
                "SPDXID": "SPDXRef-Weights-1",
                "name": "/models/m.bin",
                "packageFileName": "/models/m.bin",
                "primaryPackagePurpose": "FILE",
                "checksums": [{"checksumValue": hashlib.sha256(WEIGHTS).hexdigest()}],
            },
        ]
    }


def test_every_file_is_accounted_for(tmp_path: Path) -> None:
    report = account_layers(_layers(tmp_path), _document())
    assert report.problems == []
    assert report.files == 14
    # dpkg's list, md5sums and the two files; /bin (a directory in the .deb, a link here).
    assert report.owners == {"deb": 5, "generated": 2, "weights": 1, "wheel": 4, "venv": 2}


def test_a_file_nothing_names_is_unaccounted_for(tmp_path: Path) -> None:
    report = account_layers(_layers(tmp_path, {"opt/agent/app/stray.txt": b"?"}), _document())
    assert report.problems == ["unaccounted: /opt/agent/app/stray.txt (layer 3)"]


def test_bytes_that_differ_from_what_the_package_says(tmp_path: Path) -> None:
    document = _document()
    document["packages"][3]["checksums"][0]["checksumValue"] = "0" * 64
    (problem,) = account_layers(_layers(tmp_path), document).problems
    assert problem.startswith("bytes differ: /models/m.bin: sha256 ")


def test_packages_the_sbom_does_not_name_and_entries_the_image_lacks(tmp_path: Path) -> None:
    document = copy.deepcopy(_document())
    document["packages"][1]["name"] = "bar"
    document["packages"][2]["versionInfo"] = "2.0"
    problems = account_layers(_layers(tmp_path), document).problems
    assert (
        "unaccounted: /usr/bin/foo: dpkg lists it for foo, which the SBOM does not name" in problems
    )
    assert any(
        p.startswith("unaccounted: /opt/agent/bin/pkg-tool: RECORD of pkg 1.0") for p in problems
    )
    assert "SBOM entry not in the image: Debian package bar" in problems
    assert "SBOM entry not in the image: wheel pkg 2.0" in problems


def test_the_account_command_reads_an_image_of_an_oci_layout_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    layout = tmp_path / "image.oci"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    descriptors = []
    for layer in _layers(tmp_path):
        data = layer.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        descriptors.append({"digest": f"sha256:{digest}", "size": len(data)})
    manifest = json.dumps({"layers": descriptors}).encode()
    manifest_digest = hashlib.sha256(manifest).hexdigest()
    (blobs / manifest_digest).write_bytes(manifest)
    (layout / "index.json").write_text(
        json.dumps(
            {
                "manifests": [
                    # Another image of the shared layout, listed first.
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": f"sha256:{'0' * 64}",
                        "annotations": {"org.opencontainers.image.ref.name": "other:1"},
                    },
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": f"sha256:{manifest_digest}",
                        "annotations": {"org.opencontainers.image.ref.name": "mine:1"},
                    },
                ]
            }
        )
    )
    document = _document()
    document["packages"][0]["checksums"][0]["checksumValue"] = manifest_digest
    (tmp_path / "sbom.json").write_text(json.dumps(document))
    command = ["account", "--layout", str(layout), "--spdx", str(tmp_path / "sbom.json")]
    assert main([*command, "--name", "mine:1"]) == 0
    assert main([*command, "--name", "nosuch:1"]) == 2
    assert f"{layout}: no image is named nosuch:1" in capsys.readouterr().err
    document["packages"][1]["name"] = "bar"
    (tmp_path / "sbom.json").write_text(json.dumps(document))
    assert main([*command, "--name", "mine:1"]) == 1
