"""The Debian base end to end, against the live mirror and the real dockerd: lock bookworm's
Python 3.11 runtime (gpgv-checked indexes), fetch the .debs, unpack them twice under different
umask, TZ and output paths into byte-identical layers, then build images with the OCI writer,
`docker load` them and run Python (and, in the shell variant, /bin/sh) as uid 65532 on a
read-only root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import ai_agent
from ai_agent.debian.index import (
    DEBIAN_ARCHIVE_KEYRING,
    DEFAULT_MIRRORS,
    PackageIndex,
    fetch_indexes,
)
from ai_agent.debian.lock import PYTHON_RUNTIME_PACKAGES, Lock, LockRequest, lock_from_indexes
from ai_agent.oci.archive import write_archive
from ai_agent.oci.image import ConfigUpdate, Image, Layer, build_image
from ai_agent.oci.types import Descriptor, Platform
from testkit.components import download_cache, missing_component, require_binary

pytestmark = pytest.mark.integration

ARCHITECTURE = "amd64"
PYTHON_CHECK = "import ssl, sqlite3, zlib, ctypes, json, zoneinfo; print('ok')"
PACKAGE_ROOT = str(Path(ai_agent.__file__).resolve().parent.parent)


def _cli(*args: str, env: Optional[Dict[str, str]] = None, umask: int = 0o022) -> None:
    """Run `python -m ai_agent.debian ARGS` as the build processes do."""
    environment = {**os.environ, "PYTHONPATH": PACKAGE_ROOT, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "ai_agent.debian", *args],
        env=environment,
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.umask(umask),
    )
    assert result.returncode == 0, result.stderr


def _extract(blob: Path, root: Path) -> Path:
    """Unpack a layer with GNU tar, as a runtime would see it."""
    root.mkdir()
    subprocess.run(["tar", "-xf", str(blob), "-C", str(root)], check=True)
    return root


@pytest.fixture(scope="module")
def live_mirror() -> None:
    require_binary("gpgv", "gpgv")
    if not os.path.isfile(DEBIAN_ARCHIVE_KEYRING):
        missing_component(DEBIAN_ARCHIVE_KEYRING, "the Debian package `debian-archive-keyring`")
    url = f"{DEFAULT_MIRRORS['debian'][0]}/dists/bookworm/InRelease"
    try:
        urllib.request.urlopen(url, timeout=15).close()
    except OSError as error:
        missing_component(f"the Debian mirror ({url}: {error})", "network access to it")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("debian-base")


@pytest.fixture(scope="module")
def minimal_lock(live_mirror: None, workdir: Path) -> Path:
    """A fresh lock of the Python runtime, made by the CLI against the live mirror."""
    path = workdir / "minimal.lock.json"
    _cli("lock", "--suite", "bookworm", "--arch", ARCHITECTURE, "--output", str(path))
    return path


@pytest.fixture(scope="module")
def debs(minimal_lock: Path) -> Path:
    _cli("fetch", "--lock", str(minimal_lock), "--output-dir", str(download_cache("debian-debs")))
    return download_cache("debian-debs")


def _build_layer(
    lock: Path, output: Path, env: Optional[Dict[str, str]] = None, umask: int = 0o022
) -> Dict[str, Any]:
    args = [
        "layer",
        "--lock",
        str(lock),
        "--debs",
        str(download_cache("debian-debs")),
        "--output-dir",
        str(output),
    ]
    _cli(*args, "--bytecode", "yes", env=env, umask=umask)
    return json.loads((output / "descriptor.json").read_text())


@pytest.fixture(scope="module")
def live_indexes(live_mirror: None) -> Dict[str, List[PackageIndex]]:
    """bookworm's indexes, read again by the library (for the shell variant, and to check
    that the CLI's lock regenerates byte for byte)."""
    mirrors = {archive: urls[0] for archive, urls in DEFAULT_MIRRORS.items()}
    return fetch_indexes("bookworm", [ARCHITECTURE], mirrors)


@pytest.fixture(scope="module")
def minimal_layer(minimal_lock: Path, debs: Path, workdir: Path) -> Path:
    _build_layer(minimal_lock, workdir / "minimal-layer")
    return workdir / "minimal-layer"


def test_the_lock_pins_the_python_runtime(minimal_lock: Path) -> None:
    lock = Lock.loads(minimal_lock.read_bytes(), str(minimal_lock))
    packages = {package.name: package for package in lock.packages_for(ARCHITECTURE)}
    assert set(PYTHON_RUNTIME_PACKAGES) <= set(packages)
    assert {"libc6", "libssl3", "libsqlite3-0", "libffi8", "zlib1g"} <= set(packages)
    # Essential packages are not pulled in; security updates are.
    assert not {"dpkg", "tar", "coreutils", "dash"} & set(packages)
    assert any(package.suite == "bookworm-security" for package in packages.values())
    assert 30 <= len(packages) <= 45
    assert set(lock.to_json()["indexes"]) == {"bookworm", "bookworm-updates", "bookworm-security"}


def test_regenerating_the_lock_gives_the_same_bytes(
    minimal_lock: Path, live_indexes: Dict[str, List[PackageIndex]]
) -> None:
    first = Lock.loads(minimal_lock.read_bytes(), str(minimal_lock))
    again = lock_from_indexes(first.request, live_indexes)
    if again.indexes != first.indexes:
        pytest.skip("the mirror published new indexes between the two runs")
    assert again.dumps() == minimal_lock.read_bytes()


def test_layers_are_byte_identical_across_umask_tz_and_output_path(
    minimal_lock: Path, minimal_layer: Path, workdir: Path
) -> None:
    first = json.loads((minimal_layer / "descriptor.json").read_text())
    elsewhere = workdir / "elsewhere" / "deeper" / "layer"
    second = _build_layer(
        minimal_lock, elsewhere, env={"TZ": "Pacific/Kiritimati", "LC_ALL": "C"}, umask=0o077
    )
    assert (second["digest"], second["diffID"]) == (first["digest"], first["diffID"])
    blob = (elsewhere / "layer.tar.gz").read_bytes()
    assert blob == (minimal_layer / "layer.tar.gz").read_bytes()
    assert sorted(path.name for path in elsewhere.iterdir()) == [
        "descriptor.json",
        "layer.tar.gz",
        "packages.json",
    ]
    packages = (elsewhere / "packages.json").read_bytes()
    assert packages == (minimal_layer / "packages.json").read_bytes()


def test_the_layer_holds_a_dpkg_database_and_bytecode(
    minimal_lock: Path, minimal_layer: Path, workdir: Path
) -> None:
    dpkg_query = require_binary("dpkg-query", "dpkg")
    descriptor = json.loads((minimal_layer / "descriptor.json").read_text())
    paths = {entry["path"]: entry for entry in descriptor["entries"]}
    assert "usr/lib/python3.11/__pycache__/os.cpython-311.pyc" in paths
    assert paths["tmp"]["mode"] == "1777" and paths["bin"]["target"] == "usr/bin"
    root = _extract(minimal_layer / "layer.tar.gz", workdir / "minimal-root")
    listed = subprocess.run(
        [dpkg_query, f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f", "${Package}\n"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    lock = Lock.loads(minimal_lock.read_bytes(), str(minimal_lock))
    assert listed == [package.name for package in lock.packages_for(ARCHITECTURE)]


def _load_image(docker_client: Any, layer_dir: Path, tag: str, archive: Path) -> str:
    descriptor = json.loads((layer_dir / "descriptor.json").read_text())
    layer = Layer(
        Descriptor.from_json(descriptor),
        descriptor["diffID"],
        str(layer_dir / descriptor["blob"]),
        created_by=descriptor["createdBy"],
    )
    image = build_image(
        Image.scratch(Platform("linux", ARCHITECTURE)),
        [layer],
        ConfigUpdate(env={"PATH": "/usr/local/bin:/usr/bin:/bin"}, user="65532"),
    )
    write_archive(archive, image, [tag])
    with open(archive, "rb") as stream:
        docker_client.images.load(stream.read())
    return tag


def _run(docker_client: Any, tag: str, command: List[str]) -> str:
    output = docker_client.containers.run(
        tag, command, user="65532", read_only=True, remove=True, stdout=True, stderr=True
    )
    return output.decode()


def test_python_runs_as_nonroot_on_a_read_only_root(
    docker_client: Any, minimal_layer: Path, workdir: Path, loaded_images: List[str]
) -> None:
    tag = "ai-agent-test/debian-base:minimal"
    loaded_images.append(_load_image(docker_client, minimal_layer, tag, workdir / "min.tar"))
    assert _run(docker_client, tag, ["python3", "-c", PYTHON_CHECK]) == "ok\n"
    check_tls = (
        "import ssl; print(ssl.create_default_context().cert_store_stats()['x509_ca'] > 100)"
    )
    assert _run(docker_client, tag, ["python3", "-c", check_tls]) == "True\n"
    whoami = "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.path.expanduser('~'))"
    assert _run(docker_client, tag, ["python3", "-c", whoami]) == "nonroot /home/nonroot\n"


def test_the_shell_variant_runs_sh_and_finds_libraries(
    live_indexes: Dict[str, List[PackageIndex]],
    docker_client: Any,
    workdir: Path,
    loaded_images: List[str],
) -> None:
    request = LockRequest("bookworm", (ARCHITECTURE,), PYTHON_RUNTIME_PACKAGES, variant="shell")
    lock_path = workdir / "shell.lock.json"
    lock_path.write_bytes(lock_from_indexes(request, live_indexes).dumps())
    _cli("fetch", "--lock", str(lock_path), "--output-dir", str(download_cache("debian-debs")))
    layer_dir = workdir / "shell-layer"
    _build_layer(lock_path, layer_dir)
    tag = "ai-agent-test/debian-base:shell"
    loaded_images.append(_load_image(docker_client, layer_dir, tag, workdir / "shell.tar"))
    assert _run(docker_client, tag, ["sh", "-c", "echo hi"]) == "hi\n"
    find = (
        "import ctypes.util, subprocess; print(ctypes.util.find_library('ssl'),"
        " subprocess.run('echo $0', shell=True, capture_output=True, text=True).stdout.strip())"
    )
    assert _run(docker_client, tag, ["python3", "-c", find]) == "libssl.so.3 /bin/sh\n"
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    if os.geteuid() == 0 and os.path.exists(ldconfig):
        root = _extract(layer_dir / "layer.tar.gz", workdir / "shell-root")
        ours = subprocess.run(
            [ldconfig, "-p", "-C", str(root / "etc/ld.so.cache")], capture_output=True, text=True
        ).stdout
        subprocess.run([ldconfig, "-X", "-r", str(root), "-C", "/theirs.cache"], check=True)
        theirs = subprocess.run(
            [ldconfig, "-p", "-C", str(root / "theirs.cache")], capture_output=True, text=True
        ).stdout
        assert ours.splitlines()[1:] == [
            line for line in theirs.splitlines()[1:] if not line.startswith("Cache generated")
        ]
