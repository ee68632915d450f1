from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pytest

from testkit.components import missing_component

from ..debian.download import DownloadError
from ..oci.layer import LayerError
from . import steps
from .__main__ import main
from .conftest import TESTDATA, RealWheel, WheelServer
from .errors import WheelsError


def _lock_of(wheels: Dict[str, RealWheel], path: Path) -> Path:
    """A pex lock pinning the real wheels (URLs are never fetched by `plan`)."""
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


def _group(
    wheels: Dict[str, RealWheel],
    capsys: pytest.CaptureFixture,
    threshold_mib: int = 64,
    locations: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    """`group` of `wheels`, each given by its downloaded file or by its `locations` entry."""
    where = locations or {name: str(wheel.path) for name, wheel in wheels.items()}
    arguments = ["group", "--python", "3.11", "--threshold-mib", str(threshold_mib)]
    arguments += [f"--wheel={where[name]}={wheel.sha256}" for name, wheel in wheels.items()]
    capsys.readouterr()
    assert main(arguments) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _wheel_arguments(layer: Dict[str, Any]) -> List[str]:
    """A grouped layer's wheels as the build's rules pass them to `layer`."""
    arguments = []
    for wheel in layer["wheels"]:
        arguments += [f"--wheel={wheel['wheel']}={wheel['sha256']}"]
        arguments += [f"--listing={wheel['listing']}"]
        arguments += [f"--skip={path}" for path in wheel["skip"]]
        arguments += [f"--measure={path}" for path in wheel["measure"]]
    return arguments


def _layers(
    wheels: Dict[str, RealWheel],
    output: Path,
    capsys: pytest.CaptureFixture,
    *,
    threshold_mib: int = 64,
    extra: Sequence[str] = (),
    venv_version: str = "3.11.2",
    locations: Optional[Dict[str, str]] = None,
) -> List[Dict[str, Any]]:
    """`group`, then `layer` for each layer into OUTPUT/<name>, as the build's rules run them;
    each layer as grouped, with its `installed.json` and `descriptor.json`."""
    layers = _group(wheels, capsys, threshold_mib, locations)["layers"]
    for layer in layers:
        arguments = ["layer", "--python", "3.11", "--kind", layer["kind"], *extra]
        arguments += ["--interpreter", "/usr/bin/python3.11"]
        arguments += ["--output-dir", str(output / layer["name"]), *_wheel_arguments(layer)]
        if layer["kind"] == "small":
            arguments += ["--venv-version", venv_version]
        assert main(arguments) == 0, capsys.readouterr().err
        for name in ("installed", "descriptor"):
            layer[name] = json.loads((output / layer["name"] / f"{name}.json").read_text())
    return layers


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
    real_wheels: Dict[str, RealWheel],
    host_python311: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    options = ["--bytecode-interpreter", host_python311]
    first = _layers(real_wheels, tmp_path / "first", capsys, threshold_mib=0, extra=options)
    second = _layers(
        real_wheels, tmp_path / "second" / "deeper", capsys, threshold_mib=0, extra=options
    )
    assert first == second
    assert [layer["name"] for layer in first] == [
        "site-packages-jsonpointer",
        "site-packages-markupsafe",
        "site-packages-pyflakes",
        "site-packages-six",
        # The virtual environment's own files, in the shared layer even when it has no package.
        "site-packages",
    ]
    six, shared = first[3], first[4]
    assert six["installed"]["bytecode"]["cacheTag"] == "cpython-311"
    assert six["wheels"][0]["unpackedSize"] == sum(
        info.file_size for info in zipfile.ZipFile(real_wheels["six"].path).infolist()
    )
    descriptor = six["descriptor"]
    assert descriptor["createdBy"] == "wheels: six 1.16.0"
    # A big wheel's layer is gzipped fast (level 1), the shared one at the usual 6.
    levels = (descriptor["compression"]["level"], shared["descriptor"]["compression"]["level"])
    assert levels == (1, 6)
    paths = [entry["path"] for entry in descriptor["entries"]]
    assert paths[:5] == [
        "opt",
        "opt/agent",
        "opt/agent/lib",
        "opt/agent/lib/python3.11",
        "opt/agent/lib/python3.11/site-packages",
    ]
    assert "opt/agent/lib/python3.11/site-packages/__pycache__/six.cpython-311.pyc" in paths
    assert sorted(path.name for path in (tmp_path / "first" / "site-packages-six").iterdir()) == [
        "descriptor.json",
        "installed.json",
        "layer.tar.gz",
    ]

    [layer] = _layers(real_wheels, tmp_path / "shared", capsys, extra=["--compression", "none"])
    assert (layer["name"], layer["kind"], layer["installed"]["bytecode"]) == (
        "site-packages",
        "small",
        None,
    )
    assert [dist["project"] for dist in layer["installed"]["distributions"]] == sorted(real_wheels)
    assert (tmp_path / "shared" / "site-packages" / "layer.tar").is_file()
    # What the SBOM reads: each wheel's sha256, its .dist-info and its METADATA's licence.
    six = next(d for d in layer["installed"]["distributions"] if d["project"] == "six")
    assert six["sha256"] == real_wheels["six"].sha256
    assert (
        six["distInfo"] == f"opt/agent/lib/python3.11/site-packages/six-{six['version']}.dist-info"
    )
    assert six["license"]["license"] == "MIT"


def test_a_big_wheel_layer_depends_on_that_wheel_only(
    real_wheels: Dict[str, RealWheel], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """What makes one build step per big wheel, shared by every agent locking it: its layer is
    the same whatever else the agent locks."""
    everything = _layers(real_wheels, tmp_path / "all", capsys, threshold_mib=0)
    fewer = {name: real_wheels[name] for name in ("pyflakes", "six")}
    some = _layers(fewer, tmp_path / "some", capsys, threshold_mib=0)
    digests = {layer["name"]: layer["descriptor"]["digest"] for layer in everything}
    assert {layer["name"]: layer["descriptor"]["digest"] for layer in some} == {
        name: digests[name] for name in ("site-packages-pyflakes", "site-packages-six")
    } | {"site-packages": digests["site-packages"]}


def test_errors_are_one_line_and_exit_2(
    real_wheels: Dict[str, RealWheel], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    six = real_wheels["six"]
    layer = ["layer", "--python", "3.11", "--output-dir", str(tmp_path / "out")]
    assert main([*layer, f"--wheel={tmp_path}/{six.filename}={six.sha256}"]) == 2
    error = capsys.readouterr().err
    assert (
        error.startswith("error: ") and "six-1.16.0-py2.py3-none-any.whl: cannot read it" in error
    )
    assert main([*layer, f"--wheel={six.path}={six.sha256}", "--skip=opt/agent/x.py"]) == 2
    assert capsys.readouterr().err == (
        f"error: --skip opt/agent/x.py: {six.filename} does not install it\n"
    )
    assert main(["group", "--python", "3.11.2", f"--wheel={six.path}={six.sha256}"]) == 2
    assert (
        "--python takes the image's CPython as X.Y (3.11), got '3.11.2'" in capsys.readouterr().err
    )
    lock = _lock_of(real_wheels, tmp_path / "test.lock")
    plan = ["plan", "--lock", str(lock), "--requirement", "six", "--python", "3.11"]
    assert main([*plan, "--platform", "linux/s390x"]) == 2
    assert "--platform must be one of" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error", [WheelsError("root"), DownloadError("u", "gone"), LayerError("x")]
)
def test_errors_of_the_core_and_of_those_it_drives_are_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, error: Exception
) -> None:
    def run_group(args: argparse.Namespace) -> None:
        raise error

    monkeypatch.setattr(steps, "run_group", run_group)
    assert main(["group", "--python", "3.11"]) == 2
    assert capsys.readouterr().err == f"error: {error}\n"


def _served(
    wheels: Dict[str, RealWheel], root: Path, server_of: Callable[..., WheelServer], ranges: bool
) -> Tuple[WheelServer, Dict[str, str]]:
    """A loopback server of copies of `wheels`, and each one's URL."""
    root.mkdir()
    for wheel in wheels.values():
        shutil.copyfile(wheel.path, root / wheel.filename)
    server = server_of(root, ranges)
    return server, {name: server.url_of(root / w.filename) for name, w in wheels.items()}


def _relocated(
    layers: List[Dict[str, Any]], wheels: Dict[str, RealWheel], locations: Dict[str, str]
) -> List[Dict[str, Any]]:
    """`layers` grouped from the files of `wheels`, with each wheel given by its `locations`
    entry instead: what grouping the same wheels from there must give."""
    by_path = {str(wheel.path): locations[name] for name, wheel in wheels.items()}
    for layer in layers:
        for wheel in layer["wheels"]:
            wheel["wheel"] = by_path[wheel["wheel"]]
    return layers


def test_wheels_given_by_url_are_grouped_by_ranges_and_layered_alike(
    format_wheels: Dict[str, RealWheel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    wheel_server: Callable[..., WheelServer],
) -> None:
    """What the build runs: `group` reads each wheel's directory where it is served, by byte
    ranges, and each `layer` step downloads its own wheels; the layers are those of the same
    wheels downloaded first, to the byte, and no wheel is left in a layer's output."""
    nvidia = {name: format_wheels[name] for name in format_wheels if name.startswith("nvidia-")}
    local = _layers(nvidia, tmp_path / "local", capsys, threshold_mib=0)
    server, urls = _served(nvidia, tmp_path / "served", wheel_server, ranges=True)
    served = _layers(nvidia, tmp_path / "remote", capsys, threshold_mib=0, locations=urls)
    assert _relocated(local, nvidia, urls) == served
    # The namespace both install: one skips it, the other measures it for the listing.
    assert [wheel["measure"] for layer in served for wheel in layer["wheels"]] == [
        ["opt/agent/lib/python3.11/site-packages/nvidia/__init__.py"],
        [],
    ]
    grouping = [asked for _, asked in server.requests if asked is not None]
    downloads = [path for path, asked in server.requests if asked is None]
    assert grouping and sorted(downloads) == sorted(f"/{w.filename}" for w in nvidia.values())
    for layer in served:
        files = sorted(path.name for path in (tmp_path / "remote" / layer["name"]).iterdir())
        assert files == ["descriptor.json", "installed.json", "layer.tar.gz"]


def test_a_server_without_ranges_serves_whole_wheels_and_bad_bytes_are_refused(
    format_wheels: Dict[str, RealWheel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    wheel_server: Callable[..., WheelServer],
) -> None:
    nvidia = {name: format_wheels[name] for name in format_wheels if name.startswith("nvidia-")}
    server, urls = _served(nvidia, tmp_path / "served", wheel_server, ranges=False)
    grouped = _group(nvidia, capsys, 0, locations=urls)["layers"]
    # The same layers as from the downloaded wheels, locations aside.
    assert grouped == _relocated(_group(nvidia, capsys, 0)["layers"], nvidia, urls)
    assert {asked for _, asked in server.requests} != {None}  # asked for ranges, got files
    assert [w["wheel"] for layer in grouped for w in layer["wheels"]] == sorted(urls.values())

    first, second = (layer for layer in grouped if layer["kind"] == "big")
    output = tmp_path / "out"
    layer = ["layer", "--python", "3.11", "--kind", "big", "--output-dir", str(output)]
    # Bytes other than the ones grouping listed: the other wheel's listing stands in for them.
    wrong_listing = _wheel_arguments(first)
    wrong_listing[1] = f"--listing={second['wheels'][0]['listing']}"
    assert main([*layer, *wrong_listing]) == 2
    error = capsys.readouterr().err
    assert "the verified wheel lists other files or bytes" in error, error
    # A served wheel that is not the locked one.
    (tmp_path / "served" / first["wheels"][0]["wheel"].rsplit("/", 1)[1]).write_bytes(b"other")
    assert main([*layer, *_wheel_arguments(first)]) == 2
    assert "served 5 bytes with sha256" in capsys.readouterr().err
    assert list(output.iterdir()) == []


def test_wheels_given_by_file_url_are_grouped_and_layered_like_the_files(
    format_wheels: Dict[str, RealWheel], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A lock may name its wheels by `file://` URL (a mirror on disk): grouping reads each one
    whole, as from a server without ranges, and the layer steps give the files' own layers."""
    nvidia = {name: format_wheels[name] for name in format_wheels if name.startswith("nvidia-")}
    local = _layers(nvidia, tmp_path / "local", capsys, threshold_mib=0)
    urls = {name: wheel.path.as_uri() for name, wheel in nvidia.items()}
    assert all(url.startswith("file:///") for url in urls.values())
    from_urls = _layers(nvidia, tmp_path / "urls", capsys, threshold_mib=0, locations=urls)
    assert _relocated(local, nvidia, urls) == from_urls


def test_check_asks_pypi_for_every_locked_artifact(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    lock_text = (TESTDATA / "agents.lock").read_text()
    capsys.readouterr()
    assert main(["check", "--lock", str(TESTDATA / "agents.lock")]) == 0
    report = json.loads(capsys.readouterr().out)
    if report["problems"] and {p["status"] for p in report["problems"]} == {"unreachable"}:
        missing_component("PyPI", f"network access to files.pythonhosted.org ({report})")
    # Every artifact of the lock, the sdist too: Pants' own pex builds may use any of them.
    assert report == {"checked": lock_text.count('"url":'), "problems": []}

    real = "-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    assert real in lock_text
    url = next(line for line in lock_text.splitlines() if real in line).split('"')[3]
    rotten = tmp_path / "rotten.lock"
    bogus = url.replace(real, "-cp311-cp311-manylinux_2_17_x86_64.bogus.whl")
    rotten.write_text(lock_text.replace(url, bogus))
    assert main(["check", "--lock", str(rotten)]) == 0
    assert json.loads(capsys.readouterr().out)["problems"] == [
        {
            "item": bogus.rsplit("/", 1)[1],
            "status": "gone",
            "detail": f"{bogus}: HTTP 404 Not Found",
        }
    ]

    assert main(["check", "--lock", str(tmp_path / "absent.lock")]) == 2
    assert "absent.lock: cannot read the lockfile" in capsys.readouterr().err


def _paths(layer: Dict[str, Any]) -> List[str]:
    return [entry["path"] for entry in layer["descriptor"]["entries"]]


def test_the_nvidia_namespace_of_two_wheels_is_installed_once(
    format_wheels: Dict[str, RealWheel], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    nvidia = {name: format_wheels[name] for name in format_wheels if name.startswith("nvidia-")}
    namespace = "opt/agent/lib/python3.11/site-packages/nvidia/__init__.py"
    for threshold_mib, output in ((64, tmp_path / "shared"), (0, tmp_path / "own")):
        layers = _layers(nvidia, output, capsys, threshold_mib=threshold_mib)
        holders = [layer["name"] for layer in layers if namespace in _paths(layer)]
        # Once, in the first layer that has it: the shared one, or the first big one by name.
        assert holders == [layers[0]["name"]]
        notes = [note for layer in layers for wheel in layer["wheels"] for note in wheel["notes"]]
        assert notes == [
            "1 file(s) with the same bytes as in nvidia-cuda-runtime-cu12 are installed once, by"
            f" the first layer: {namespace}"
        ]
        skipped = [
            note
            for layer in layers
            for dist in layer["installed"]["distributions"]
            for note in dist["notes"]
        ]
        assert skipped == [
            "1 file(s) with the same bytes as in an earlier layer are installed once, by that"
            f" layer: {namespace}"
        ]
        # RECORD lists the skipped file, as pip's would.
        with tarfile.open(
            output / layers[-2 if threshold_mib == 0 else -1]["name"] / "layer.tar.gz"
        ) as archive:
            [record] = [
                name
                for name in archive.getnames()
                if name.endswith(".dist-info/RECORD") and "nvtx" in name
            ]
            rows = archive.extractfile(record).read().decode()  # type: ignore[union-attr]
        assert "\nnvidia/__init__.py,sha256=" in f"\n{rows}"
    assert [layer["name"] for layer in layers] == [
        "site-packages-nvidia-cuda-runtime-cu12",
        "site-packages-nvidia-nvtx-cu12",
        "site-packages",
    ]


def test_two_projects_installing_one_module_differently_are_refused(
    format_wheels: Dict[str, RealWheel], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    both = [format_wheels[name] for name in ("jwt", "pyjwt")]
    arguments = ["group", "--python", "3.11"]
    assert main([*arguments, *(f"--wheel={w.path}={w.sha256}" for w in both)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(
        "error: opt/agent/lib/python3.11/site-packages/jwt/__init__.py is installed by both"
        " jwt-1.3.1-py3-none-any.whl and PyJWT-2.8.0-py3-none-any.whl with different contents"
    ), error
    assert "Remove one of the two projects from the resolve" in error


def test_the_prefix_is_a_virtual_environment_whose_pth_files_take_effect(
    real_wheels: Dict[str, RealWheel],
    format_wheels: Dict[str, RealWheel],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    """The layers unpacked as a runtime would, and the prefix's python run: setuptools'
    `distutils-precedence.pth` is processed (its import line loads `_distutils_hack`), which a
    directory on PYTHONPATH would ignore."""
    interpreter = "/usr/bin/python3.11"  # the image's; Debian 12 hosts have it too
    if not os.access(interpreter, os.X_OK):
        missing_component(interpreter, "the Debian package `python3.11`")
    wheels = {"six": real_wheels["six"], "setuptools": format_wheels["setuptools"]}
    [layer] = _layers(wheels, tmp_path / "out", capsys)
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(tmp_path / "out" / layer["name"] / "layer.tar.gz"),
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


def test_a_download_from_a_server_that_never_answers_stops_within_the_limits_given(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # connections queue, nothing answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/demo-1.0-py3-none-any.whl"
        args = ["layer", "--python", "3.11", "--output-dir", str(tmp_path / "out")]
        args += [f"--wheel={url}={'0' * 64}"]
        args += ["--read-timeout", "0.5", "--attempts", "10", "--total-timeout", "1"]
        started = time.monotonic()
        assert main(args) == 2
        assert time.monotonic() - started < 5
    assert re.fullmatch(
        re.escape(
            f"error: {url}: connected, but no answer within 0.5 s (gave up after 1 attempt(s)"
        )
        + r" in \d+ s: another would start past the total limit of 1 s\)",
        capsys.readouterr().err.strip(),
    )
