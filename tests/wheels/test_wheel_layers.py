"""Third-party wheels on the Debian base, end to end with the real dockerd: the base layer from
the repo's bookworm lock, numpy's layers from the agents lock (its manylinux wheel grouped and
downloaded from PyPI as the build's steps do, and verified against the lock), bytecode compiled
at build time, and the image run as uid 65532 on a read-only root, where nothing can be
compiled or written at import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

import ai_agent
from ai_agent.oci.archive import write_archive
from ai_agent.oci.image import ConfigUpdate, Image, Layer, build_image
from ai_agent.oci.types import Descriptor, Platform
from testkit.components import download_cache, host_interpreter, missing_component

pytestmark = pytest.mark.integration

PACKAGE_ROOT = str(Path(ai_agent.__file__).resolve().parent.parent)
LOCKFILES = Path(PACKAGE_ROOT).parent / "lockfiles"
SITE_PACKAGES = "/opt/agent/lib/python3.11/site-packages"
TAG = "ai-agent-test/wheels:numpy"


def _cli(package: str, *args: str) -> str:
    """Run `python -m ai_agent.PACKAGE ARGS` as the build processes do."""
    result = subprocess.run(
        [sys.executable, "-m", f"ai_agent.{package}", *args],
        env={**os.environ, "PYTHONPATH": PACKAGE_ROOT},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _layer(directory: Path) -> Layer:
    descriptor = json.loads((directory / "descriptor.json").read_text())
    return Layer(
        Descriptor.from_json(descriptor),
        descriptor["diffID"],
        str(directory / descriptor["blob"]),
        created_by=descriptor["createdBy"],
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheel-layers")


@pytest.fixture(scope="module")
def base_layer(workdir: Path) -> Path:
    lock = LOCKFILES / "debian-bookworm-python.lock.json"
    debs = download_cache("debian-debs")
    try:
        _cli("debian", "fetch", "--lock", str(lock), "--output-dir", str(debs))
    except AssertionError as error:
        missing_component("the Debian mirror", f"network access to it ({error})")
    output = workdir / "base"
    _cli("debian", "layer", "--lock", str(lock), "--debs", str(debs), "--output-dir", str(output))
    return output


def _wheel_layers(output: Path, python311: str) -> List[Dict[str, Any]]:
    """`group`, then `layer` for each grouped layer into OUTPUT/<name>, as the build's rules
    run them (grouping reads the wheels on PyPI by byte ranges, each layer downloads its own);
    each layer as grouped, with its `installed.json`."""
    plan = _cli(
        "wheels", "plan", "--lock", str(LOCKFILES / "agents.lock"), "--requirement", "numpy>=1.26",
        "--python", "3.11.2", "--platform", "linux/amd64", "--glibc", "2.36",
    )  # fmt: skip
    layout = ["--python", "3.11", "--prefix", "opt/agent", "--interpreter", "/usr/bin/python3.11"]
    chosen = [f"--wheel={wheel['url']}={wheel['sha256']}" for wheel in json.loads(plan)]
    layers = json.loads(_cli("wheels", "group", *layout, "--threshold-mib", "16", *chosen))[
        "layers"
    ]
    for layer in layers:
        arguments = [*layout, "--kind", layer["kind"], "--bytecode-interpreter", python311]
        arguments += [
            "--source-date-epoch",
            "946684800",
            "--output-dir",
            str(output / layer["name"]),
        ]
        for wheel in layer["wheels"]:
            arguments += [f"--wheel={wheel['wheel']}={wheel['sha256']}"]
            arguments += [f"--listing={wheel['listing']}"]
            arguments += [f"--skip={path}" for path in wheel["skip"]]
            arguments += [f"--measure={path}" for path in wheel["measure"]]
        if layer["kind"] == "small":
            arguments += ["--venv-version", "3.11.2"]
        _cli("wheels", "layer", *arguments)
        layer["installed"] = json.loads((output / layer["name"] / "installed.json").read_text())
    return layers


@pytest.fixture(scope="module")
def python311() -> str:
    return host_interpreter("3.11")


def test_numpy_imports_from_its_own_layer_on_a_read_only_root(
    docker_client: Any,
    base_layer: Path,
    python311: str,
    workdir: Path,
    loaded_images: List[str],
) -> None:
    summary = _wheel_layers(workdir / "wheels", python311)
    again = _wheel_layers(workdir / "elsewhere" / "wheels", python311)
    assert summary == again
    # numpy unpacks to ~40 MB: above the 16 MiB threshold, so alone in its layer; the shared one
    # holds only the virtual environment's own files.
    layer, venv = summary
    assert (layer["name"], layer["kind"]) == ("site-packages-numpy", "big")
    assert layer["wheels"][0]["unpackedSize"] > 16 << 20
    assert (venv["name"], venv["wheels"]) == ("site-packages", [])

    layers = [
        _layer(base_layer),
        *(_layer(workdir / "wheels" / name["name"]) for name in (layer, venv)),
    ]
    # No PYTHONPATH: `python3` on PATH is the virtual environment's, whose site-packages it is.
    config = ConfigUpdate(env={"PATH": "/opt/agent/bin:/usr/bin:/bin"}, user="65532")
    image = build_image(Image.scratch(Platform("linux", "amd64")), layers, config)
    archive = workdir / "image.tar"
    write_archive(archive, image, [TAG])
    with open(archive, "rb") as stream:
        docker_client.images.load(stream.read())
    loaded_images.append(TAG)

    def run(command: List[str]) -> str:
        output = docker_client.containers.run(
            TAG, command, user="65532", read_only=True, remove=True, stdout=True, stderr=True
        )
        return output.decode()

    assert run(["python3", "-c", "import numpy; print(numpy.arange(6).sum())"]) == "15\n"
    # Every module came from a .pyc made at build time: none was compiled here, and the
    # read-only root would have refused to store one.
    check = (
        "import sys, importlib.util, numpy, numpy.linalg;"
        " mods = [m for m in sys.modules.values() if getattr(m, '__file__', '')"
        f" and m.__file__.startswith('{SITE_PACKAGES}') and m.__file__.endswith('.py')];"
        " missing = [m.__name__ for m in mods"
        "  if not __import__('os').path.exists(importlib.util.cache_from_source(m.__file__))];"
        " print(len(mods) > 50, missing, numpy.__file__)"
    )
    assert run(["python3", "-c", check]) == (f"True [] {SITE_PACKAGES}/numpy/__init__.py\n")
    assert run(["f2py", "-v"]).strip() == "2.2.6"
