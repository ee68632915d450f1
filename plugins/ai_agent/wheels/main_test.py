from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import pytest

from testkit.components import missing_component

from .__main__ import main
from .conftest import TESTDATA, RealWheel


def _lock_of(wheels: Dict[str, RealWheel], path: Path) -> Path:
    """A pex lock pinning the real wheels (URLs are never fetched by `layers`)."""
    projects = [
        {
            "project_name": name,
            "version": wheel.requirement.split("==")[1],
            "requires_dists": [],
            "requires_python": ">=3.7",
            "artifacts": [
                {
                    "url": f"https://files.example/{wheel.filename}",
                    "algorithm": "sha256",
                    "hash": wheel.sha256,
                }
            ],
        }
        for name, wheel in wheels.items()
    ]
    path.write_text(
        "// test lock\n" + json.dumps({"locked_resolves": [{"locked_requirements": projects}]})
    )
    return path


def _layers(lock: Path, wheels_dir: Path, output: Path, extra: List[str]) -> Dict[str, Any]:
    arguments = ["layers", "--lock", str(lock), "--python", "3.11", "--platform", "linux/amd64"]
    arguments += ["--wheels", str(wheels_dir), "--output-dir", str(output)]
    arguments += ["--interpreter", "/usr/bin/python3.11", *extra]
    for requirement in ("six", "markupsafe", "jsonpointer", "pyflakes"):
        arguments += ["--requirement", requirement]
    assert main(arguments) == 0
    return json.loads((output / "layers.json").read_text())


def test_plan_prints_the_wheels_to_download(capsys: pytest.CaptureFixture) -> None:
    arguments = ["plan", "--lock", str(TESTDATA / "agents.lock"), "--requirement", "numpy>=1.26"]
    assert main(arguments + ["--python", "3.11", "--platform", "linux/arm64"]) == 0
    [wheel] = json.loads(capsys.readouterr().out)
    assert (
        wheel["filename"]
        == "numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    )
    assert wheel["url"].startswith("https://files.pythonhosted.org/") and len(wheel["sha256"]) == 64


def test_layers_are_reproducible_and_split_by_size(
    real_wheels: Dict[str, RealWheel], host_python311: str, tmp_path: Path
) -> None:
    lock = _lock_of(real_wheels, tmp_path / "test.lock")
    wheels_dir = real_wheels["six"].path.parent
    options = ["--threshold-mib", "0", "--bytecode-interpreter", host_python311]
    first = _layers(lock, wheels_dir, tmp_path / "first", options)
    second = _layers(lock, wheels_dir, tmp_path / "second" / "deeper", options)
    assert first == second
    assert [layer["name"] for layer in first["layers"]] == [
        "site-packages-jsonpointer",
        "site-packages-markupsafe",
        "site-packages-pyflakes",
        "site-packages-six",
        # The virtual environment's own files, in the shared layer even when it has no package.
        "site-packages",
    ]
    assert first["bytecode"]["cacheTag"] == "cpython-311"
    descriptor = json.loads(
        (tmp_path / "first" / "site-packages-six" / "descriptor.json").read_text()
    )
    assert descriptor["createdBy"] == "wheels: six 1.16.0"
    # A big distribution's layer is gzipped fast (level 1), the shared one at the usual 6.
    shared_descriptor = json.loads(
        (tmp_path / "first" / "site-packages" / "descriptor.json").read_text()
    )
    assert (descriptor["compression"]["level"], shared_descriptor["compression"]["level"]) == (1, 6)
    paths = [entry["path"] for entry in descriptor["entries"]]
    assert paths[:5] == [
        "opt",
        "opt/agent",
        "opt/agent/lib",
        "opt/agent/lib/python3.11",
        "opt/agent/lib/python3.11/site-packages",
    ]
    assert "opt/agent/lib/python3.11/site-packages/__pycache__/six.cpython-311.pyc" in paths
    assert sorted(path.name for path in (tmp_path / "first").iterdir()) == sorted(
        [layer["name"] for layer in first["layers"]] + ["layers.json"]
    )

    shared = _layers(lock, wheels_dir, tmp_path / "shared", ["--compression", "none"])
    [layer] = shared["layers"]
    assert (layer["name"], layer["kind"], shared["bytecode"]) == ("site-packages", "small", None)
    assert [dist["project"] for dist in layer["distributions"]] == sorted(real_wheels)
    assert (tmp_path / "shared" / "site-packages" / "layer.tar").is_file()


def test_errors_are_one_line_and_exit_2(
    real_wheels: Dict[str, RealWheel], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lock = _lock_of(real_wheels, tmp_path / "test.lock")
    arguments = ["layers", "--lock", str(lock), "--python", "3.11", "--platform", "linux/amd64"]
    arguments += ["--requirement", "six", "--output-dir", str(tmp_path / "out")]
    assert main(arguments + ["--wheels", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "missing six-1.16.0-py2.py3-none-any.whl" in error
    assert (
        main(
            [
                "plan",
                "--lock",
                str(lock),
                "--requirement",
                "six",
                "--python",
                "3.11",
                "--platform",
                "linux/s390x",
            ]
        )
        == 2
    )
    assert "--platform must be one of" in capsys.readouterr().err


def test_fetch_keeps_only_verified_bytes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    served = tmp_path / "served" / "demo-1.0-py3-none-any.whl"
    served.parent.mkdir()
    served.write_bytes(b"wheel bytes")
    sha256 = hashlib.sha256(b"wheel bytes").hexdigest()
    output = tmp_path / "out" / served.name
    url = served.as_uri()

    assert main(["fetch", "--url", url, "--sha256", "0" * 64, "--output", str(output)]) == 2
    assert "served 11 bytes with sha256" in capsys.readouterr().err
    assert list(output.parent.iterdir()) == []

    assert main(["fetch", "--url", url, "--sha256", sha256, "--output", str(output)]) == 0
    assert output.read_bytes() == b"wheel bytes"


def _layers_of(
    wheels: Dict[str, RealWheel], tmp_path: Path, output: Path, threshold_mib: int
) -> List[str]:
    """`layers` for all of `wheels`; returns the arguments, to run with `main`."""
    lock = _lock_of(wheels, tmp_path / "format.lock")
    arguments = ["layers", "--lock", str(lock), "--python", "3.11", "--platform", "linux/amd64"]
    arguments += ["--wheels", str(next(iter(wheels.values())).path.parent)]
    arguments += ["--output-dir", str(output), "--threshold-mib", str(threshold_mib)]
    for name in wheels:
        arguments += ["--requirement", name]
    return arguments


def _layer_paths(output: Path, layer: Dict[str, Any]) -> List[str]:
    descriptor = json.loads((output / layer["descriptor"]).read_text())
    return [entry["path"] for entry in descriptor["entries"]]


def test_the_nvidia_namespace_of_two_wheels_is_installed_once(
    format_wheels: Dict[str, RealWheel], tmp_path: Path
) -> None:
    nvidia = {name: format_wheels[name] for name in format_wheels if name.startswith("nvidia-")}
    namespace = "opt/agent/lib/python3.11/site-packages/nvidia/__init__.py"
    for threshold_mib, output in ((64, tmp_path / "shared"), (0, tmp_path / "own")):
        assert main(_layers_of(nvidia, tmp_path, output, threshold_mib)) == 0
        layers = json.loads((output / "layers.json").read_text())["layers"]
        holders = [layer["name"] for layer in layers if namespace in _layer_paths(output, layer)]
        # Once, in the first layer that has it: the shared one, or the first big one by name.
        assert holders == [layers[0]["name"]]
        notes = [
            note for layer in layers for dist in layer["distributions"] for note in dist["notes"]
        ]
        assert notes == [
            "1 file(s) with the same bytes as in nvidia-cuda-runtime-cu12 are installed once, by"
            f" the first layer: {namespace}"
        ]
    assert [layer["name"] for layer in layers] == [
        "site-packages-nvidia-cuda-runtime-cu12",
        "site-packages-nvidia-nvtx-cu12",
        "site-packages",
    ]


def test_two_projects_installing_one_module_differently_are_refused(
    format_wheels: Dict[str, RealWheel], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    both = {name: format_wheels[name] for name in ("jwt", "pyjwt")}
    assert main(_layers_of(both, tmp_path, tmp_path / "out", 64)) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "error: opt/agent/lib/python3.11/site-packages/jwt/__init__.py is installed by both"
        " jwt-1.3.1-py3-none-any.whl and PyJWT-2.8.0-py3-none-any.whl with different contents"
    ), error
    assert "Remove one of the two projects from the resolve" in error


def test_the_prefix_is_a_virtual_environment_whose_pth_files_take_effect(
    real_wheels: Dict[str, RealWheel], format_wheels: Dict[str, RealWheel], tmp_path: Path
) -> None:
    """The layers unpacked as a runtime would, and the prefix's python run: setuptools'
    `distutils-precedence.pth` is processed (its import line loads `_distutils_hack`), which a
    directory on PYTHONPATH would ignore."""
    interpreter = "/usr/bin/python3.11"  # the image's; Debian 12 hosts have it too
    if not os.access(interpreter, os.X_OK):
        missing_component(interpreter, "the Debian package `python3.11`")
    wheels = {"six": real_wheels["six"], "setuptools": format_wheels["setuptools"]}
    arguments = _layers_of(wheels, tmp_path, tmp_path / "out", 64)
    assert main([*arguments, "--python", "3.11.2", "--interpreter", interpreter]) == 0
    [layer] = json.loads((tmp_path / "out" / "layers.json").read_text())["layers"]
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(next((tmp_path / "out" / layer["name"]).glob("layer.tar*"))),
                    "-C", str(root)], check=True)  # fmt: skip
    assert (root / "opt/agent/pyvenv.cfg").read_text() == (
        "home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11.2\n"
    )
    assert os.readlink(root / "opt/agent/bin/python3.11") == interpreter
    probe = "import sys, six; print(sys.prefix, '_distutils_hack' in sys.modules, six.__file__)"
    result = subprocess.run(
        [str(root / "opt/agent/bin/python3.11"), "-c", probe],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    site = f"{root}/opt/agent/lib/python3.11/site-packages"
    assert result.stdout == f"{root}/opt/agent True {site}/six.py\n", result.stderr
