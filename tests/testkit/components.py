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
from typing import Any, Dict, Iterator, List, Mapping, NoReturn, Optional

import pytest


def running_in_ci() -> bool:
    return os.environ.get("CI") == "true"


def download_cache(name: str) -> Path:
    """A directory where tests keep what they download (wheels, .debs) between runs:
    `$AI_AGENT_TEST_CACHE/<name>`, else `~/.cache/ai-agent-tests/<name>`. CI points the variable
    at an empty directory, so that no test passes on what an earlier run left behind."""
    root = os.environ.get("AI_AGENT_TEST_CACHE") or Path.home() / ".cache" / "ai-agent-tests"
    path = Path(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def missing_component(what: str, how_to_get_it: str) -> NoReturn:
    """Skip the test on a developer machine; fail it in CI, where everything must be present."""
    message = f"{what} is not available: install {how_to_get_it}"
    if running_in_ci():
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def require_program(name: str, how_to_get_it: str) -> str:
    """The path of the program `name` on PATH; missing, see `missing_component`."""
    path = shutil.which(name)
    if path is None:
        missing_component(f"`{name}`", how_to_get_it)
    return path


def require_binary(name: str, debian_package: str) -> str:
    return require_program(name, f"the Debian package `{debian_package}`")


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
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
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


# Installed by .ci/run's "Installing BuildGrid" step.
_BUILDGRID_INSTALL = (
    "BuildGrid 0.9.1 into a CPython 3.13 venv and link its `bgd` onto PATH, as .ci/run does: "
    "`python3.13 -m venv /opt/buildgrid && /opt/buildgrid/bin/pip install buildgrid==0.9.1 && "
    "ln -s /opt/buildgrid/bin/bgd /usr/local/bin/bgd`"
)


@dataclass(frozen=True)
class RunningBuildGrid:
    """A BuildGrid REAPI server on loopback serving a remote cache: CAS (on disk), ByteStream and
    an action cache, which lives in memory, so a restarted server has forgotten every action."""

    address: str
    instance_name: str
    log_file: Path

    def pants_options(self, *, read: bool, write: bool) -> List[str]:
        """The Pants 2.17 command-line options that read and/or write this remote cache."""
        return [
            f"--remote-store-address={self.address}",
            f"--remote-instance-name={self.instance_name}",
            f"--{'' if read else 'no-'}remote-cache-read",
            f"--{'' if write else 'no-'}remote-cache-write",
            # Uploads finish after the goal; past the default 3 s Pants drops them, with rc 0.
            "--session-end-tasks-timeout=600",
        ]


# How many RPCs the server accepts at once (the README's setting): more than these builds open at
# once; those past its threads wait for one.
QUEUED_RPCS = 1000


def _buildgrid_config(address: str, instance_name: str, cas_dir: Path) -> str:
    # YAML tags (`!channel`, ...) pick BuildGrid's classes, so this is YAML, not JSON; JSON
    # strings are YAML double-quoted scalars, hence `json.dumps` for the values.
    return f"""\
server:
  - !channel
    address: {json.dumps(address)}
    insecure-mode: true
grpc-server-options:
  # Without this a second (or stale) server silently shares the port.
  grpc.so_reuseport: 0
# BuildGrid's threads as it sets them (5 per core), but RPCs past them wait for a thread instead
# of being refused (by default it accepts only as many as it has threads): Pants 2.17 bounds the
# RPCs it starts, not the byte streams it keeps open, so a torch agent's cache reads overrun
# any such limit (README, "Sizing the server").
maximum-concurrent-rpcs: {QUEUED_RPCS}
authorization:
  method: none
monitoring:
  enabled: false
instances:
  - name: {json.dumps(instance_name)}
    storages:
      - !disk-storage &cas
        path: {json.dumps(str(cas_dir))}
    caches:
      - !lru-action-cache &action-cache
        storage: *cas
        max-cached-refs: 100000
        allow-updates: true
        cache-failed-actions: false
    services:
      - !action-cache
        cache: *action-cache
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"""


@contextmanager
def start_buildgrid(workdir: Path, timeout: float = 60.0) -> Iterator[RunningBuildGrid]:
    """Run a BuildGrid server (`bgd server start`) with its CAS under `workdir` on a free loopback
    port until the block exits; yields once the server answers a capabilities request."""
    bgd = require_program("bgd", _BUILDGRID_INSTALL)
    workdir.mkdir(parents=True, exist_ok=True)
    host_port = f"127.0.0.1:{free_loopback_port()}"
    instance_name = "main"
    config_file = workdir / "buildgrid.yml"
    config_file.write_text(_buildgrid_config(host_port, instance_name, workdir / "cas"))
    log_file = workdir / "buildgrid.log"
    with open(log_file, "wb") as log:
        process = subprocess.Popen(
            [bgd, "server", "start", str(config_file)], stdout=log, stderr=subprocess.STDOUT
        )
    running = RunningBuildGrid(
        address=f"grpc://{host_port}", instance_name=instance_name, log_file=log_file
    )
    try:
        _wait_until_buildgrid_answers(bgd, process, running, timeout)
        yield running
    finally:
        _stop(process)


def _log_tail(log_file: Path, lines: int = 40) -> str:
    return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:])


def _wait_until_buildgrid_answers(
    bgd: str, process: subprocess.Popen, server: RunningBuildGrid, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    answer = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"bgd server exited with {process.returncode}:\n{_log_tail(server.log_file)}"
            )
        capabilities = subprocess.run(
            [
                bgd,
                "capabilities",
                "--remote",
                server.address,
                "--instance-name",
                server.instance_name,
            ],
            capture_output=True,
            text=True,
        )
        if capabilities.returncode == 0:
            return
        answer = capabilities.stderr.strip()
        time.sleep(0.5)
    raise RuntimeError(
        f"BuildGrid did not answer on {server.address} within {timeout}s ({answer}):\n"
        f"{_log_tail(server.log_file)}"
    )


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
