"""Start, find or unpack the real components that integration tests need."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, NoReturn, Optional

import pytest


def running_in_ci() -> bool:
    return os.environ.get("CI") == "true"


def missing_component(what: str, how_to_get_it: str) -> NoReturn:
    """Skip the test on a developer machine; fail it in CI, where everything must be present."""
    message = f"{what} is not available: install {how_to_get_it}"
    if running_in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, debian_package: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing_component(f"`{name}`", f"the Debian package `{debian_package}`")
    return path


def host_interpreter(version: str) -> str:
    """The real path of the host's CPython `version` (X.Y), not a pyenv shim, which needs PATH
    and pyenv's environment to run."""
    shim = require_binary(f"python{version}", f"python{version}")
    return subprocess.run(
        [shim, "-c", "import sys; print(sys.executable)"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class RunningRegistry:
    """A registry serving plain HTTP on loopback (dockerd treats 127.0.0.0/8 as insecure)."""

    address: str
    storage_dir: Path
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://{self.address}"


def _merged(base: Dict[str, Any], override: Mapping[str, Any]) -> Dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


@contextmanager
def start_registry(
    workdir: Path, extra_config: Optional[Mapping[str, Any]] = None, timeout: float = 30.0
) -> Iterator[RunningRegistry]:
    """Run `docker-registry serve` with filesystem storage under `workdir` until the block exits.

    `extra_config` is merged into the registry's configuration (e.g. an `auth` section).
    """
    binary = require_binary("docker-registry", "docker-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{free_loopback_port()}"
    storage_dir = workdir / "storage"
    config = _merged(
        {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": True}},
            "storage": {
                "filesystem": {"rootdirectory": str(storage_dir)},
                "delete": {"enabled": True},
            },
            "http": {"addr": address},
        },
        extra_config or {},
    )
    # JSON is YAML, and needs no third-party encoder.
    config_file = workdir / "config.yml"
    config_file.write_text(json.dumps(config, indent=2))
    log_file = workdir / "registry.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config_file)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_serving(process, address, log_file, timeout)
        yield RunningRegistry(address=address, storage_dir=storage_dir, log_file=log_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_serving(
    process: subprocess.Popen, address: str, log_file: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"docker-registry exited with {process.returncode}:\n{log_file.read_text()}"
            )
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # 401 from an auth-enabled registry still means it is serving.
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"docker-registry did not answer on {address} within {timeout}s")


def unpack_debian_package(package: str, workdir: Path) -> Path:
    """Download `package` for this machine's architecture with apt and unpack its files (no
    maintainer scripts) into `workdir/rootfs`."""
    require_binary("apt-get", "apt")
    require_binary("dpkg-deb", "dpkg")
    download = subprocess.run(
        ["apt-get", "download", "-q", package], cwd=workdir, capture_output=True, text=True
    )
    debs = sorted(workdir.glob(f"{package}_*.deb"))
    if download.returncode != 0 or not debs:
        missing_component(
            f"the Debian package `{package}` ({download.stderr.strip()})",
            "apt package lists (`apt-get update`) and access to a Debian mirror",
        )
    rootfs = workdir / "rootfs"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(rootfs)], check=True)
    return rootfs
