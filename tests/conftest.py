"""Fixtures that start and stop the real components integration tests run against.

Each fixture either hands out a working component or skips the test with a message naming the
package to install. With `CI=true` (set by CI, see `.ci/run`) a missing component fails the test
instead, so CI can never go green by skipping its integration tests.

Components: dockerd (through docker-py), the Debian `docker-registry` binary (started here on a
free loopback port with temporary storage), a BuildGrid remote cache, skopeo and umoci, a busybox
root filesystem unpacked from Debian's `busybox-static` package, and Pants itself run against a
scratch repo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, List

import pytest

from testkit.components import (
    RunningBuildGrid,
    RunningRegistry,
    missing_component,
    require_binary,
    start_buildgrid,
    start_registry,
    unpack_debian_package,
)
from testkit.pants_repo import ScratchRepo


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs a real external component (dockerd, registry, Pants, ...)"
    )


@pytest.fixture(scope="session")
def docker_client() -> Iterator[object]:
    """A docker-py client for the local dockerd (Debian `docker.io`; .ci/run starts it)."""
    try:
        import docker
    except ImportError:
        missing_component("docker-py", "the `docker` Python package (in the pants-plugins resolve)")
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as e:
        missing_component(
            "a running dockerd", f"`apt-get install docker.io` and start dockerd ({e})"
        )
    yield client
    client.close()


@pytest.fixture
def loaded_images(docker_client: Any) -> Iterator[List[str]]:
    """Tags a test loads into dockerd; removed from it afterwards (a tag removed already, with
    the image another of them named, is gone as wanted)."""
    import docker

    tags: List[str] = []
    yield tags
    for tag in tags:
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass


@pytest.fixture(scope="module")
def buildgrid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBuildGrid]:
    """A real BuildGrid remote cache (0.9.1) on a free 127.0.0.1 port, configured as the README
    says, with its CAS in a temporary directory; one per test module (its action cache lives in
    memory, so writers and readers share it)."""
    with start_buildgrid(tmp_path_factory.mktemp("buildgrid")) as server:
        yield server


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    """A real registry (Debian `docker-registry`, distribution 2.8) on a free 127.0.0.1 port."""
    with start_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="session")
def skopeo() -> str:
    return require_binary("skopeo", "skopeo")


@pytest.fixture(scope="session")
def umoci() -> str:
    return require_binary("umoci", "umoci")


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real root filesystem: Debian's busybox-static unpacked, with `bin/sh` and a few
    applet links. Made from the package, never from the host's own files."""
    rootfs = unpack_debian_package("busybox-static", tmp_path_factory.mktemp("busybox"))
    for applet in ("sh", "cat", "echo", "env", "id", "ls", "pwd", "sleep", "wget"):
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    return rootfs


@pytest.fixture
def scratch_repo(tmp_path: Path) -> ScratchRepo:
    """An empty Pants repo with this plugin enabled; `.run(...)` runs Pants in it."""
    return ScratchRepo.create(tmp_path / "repo")
