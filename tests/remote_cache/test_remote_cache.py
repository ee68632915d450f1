"""A remote cache over REAPI: clone A packages the example agents with an empty local cache and
writes every result to a real BuildGrid server; clone B, at another path with empty local caches
of its own, reads them back: every remote lookup hits, no image-building process starts, and B
packages the same images (manifest digests, archive bytes) as A.

Both clones use one server process, since BuildGrid's action cache lives in memory. What happened
is read from Pants itself, never from its exit code alone (a cache that is down or misnamed costs
one warning and still exits 0): the counters of `--stats-log`, and in B `--keep-sandboxes=always`,
which logs `Preserving local process execution dir <dir> for <description>` as it creates a
process' sandbox. Pants 2.17 creates one for every process that starts locally, including one it
starts while still asking the remote cache (after the process' `remote_cache_speculation_delay`)
and then cancels on a hit: so B must not even start a builder process. Each clone's Pants output is
kept in `<clone>/pants.log`.

Real components: BuildGrid's `bgd` (CI's `.ci/run` installs BuildGrid 0.9.1 from PyPI into a
CPython 3.13 venv at /opt/buildgrid and links `bgd` onto PATH; the `buildgrid` fixture starts the
server on a free loopback port with its CAS in a temporary directory), Pants 2.17 with this plugin
(no pantsd) against scratch repos holding the real example agents, pants.toml and lockfiles. A
builds from nothing: it downloads the agents' locked wheels from PyPI and the base's .debs from
deb.debian.org. No dockerd.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Set

import pytest

from testkit.components import RunningBuildGrid, RunningRegistry
from testkit.pants_output import (
    PackagedOutputs,
    builder_processes,
    executed_processes,
    stats_counters,
)
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

AGENTS = ("router", "triage")


@dataclass(frozen=True)
class Clone:
    """A scratch repo after `package agents::`: what Pants printed, counted and wrote."""

    result: subprocess.CompletedProcess
    counters: Mapping[str, int]
    outputs: PackagedOutputs
    log: Path

    def started(self) -> str:
        """For failure messages: every process that started, and where the whole output is."""
        return f"started: {executed_processes(self.result)}; Pants' output: {self.log}"


def _run_with_empty_local_caches(
    repo: ScratchRepo, root: Path, *arguments: str
) -> subprocess.CompletedProcess:
    """Pants in `repo` with a local store, named caches and sandboxes of its own under `root`,
    empty at first, so that nothing comes from this machine's caches."""
    local = root / "local"
    sandboxes = local / "sandboxes"
    sandboxes.mkdir(parents=True)
    result = repo.run(
        f"--local-store-dir={local / 'store'}",
        f"--named-caches-dir={local / 'named_caches'}",
        f"--local-execution-root-dir={sandboxes}",
        "--stats-log",
        *arguments,
        timeout=1800,
    )
    log = root / "pants.log"
    log.write_text(f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    assert result.returncode == 0, f"`{' '.join(arguments)}` failed; Pants' output: {log}"
    return result


def _package_with_empty_local_caches(root: Path, *options: str) -> Clone:
    """`package agents::` in a new scratch repo under `root`, with empty local caches."""
    repo = ScratchRepo.with_example_agents(root / "repo")
    result = _run_with_empty_local_caches(repo, root, *options, "package", "agents::")
    return Clone(
        result=result,
        counters=stats_counters(result),
        outputs=PackagedOutputs.read(repo),
        log=root / "pants.log",
    )


@pytest.fixture(scope="module")
def writer(tmp_path_factory: pytest.TempPathFactory, buildgrid: RunningBuildGrid) -> Clone:
    """Clone A: builds everything and writes every result to the remote cache."""
    return _package_with_empty_local_caches(
        tmp_path_factory.mktemp("writer"), *buildgrid.pants_options(read=False, write=True)
    )


@pytest.fixture(scope="module")
def reader(
    tmp_path_factory: pytest.TempPathFactory, buildgrid: RunningBuildGrid, writer: Clone
) -> Clone:
    """Clone B, once A is done: reads the remote cache, writes nothing, keeps its sandboxes."""
    return _package_with_empty_local_caches(
        tmp_path_factory.mktemp("reader"),
        "--keep-sandboxes=always",
        *buildgrid.pants_options(read=True, write=False),
    )


def test_the_writer_built_from_nothing_and_uploaded_every_result(writer: Clone) -> None:
    counters = writer.counters
    shown = f"counters: {dict(counters)}; Pants' output: {writer.log}"
    assert counters["local_cache_requests_cached"] == 0, shown
    assert counters["remote_cache_requests"] == 0, shown
    assert counters["remote_cache_write_successes"] > 0, shown
    assert (
        counters["remote_cache_write_successes"] == counters["remote_cache_write_attempts"]
    ), shown
    assert counters["remote_cache_write_errors"] == 0, shown


def test_every_lookup_of_the_reader_hits_the_remote_cache(writer: Clone, reader: Clone) -> None:
    counters = reader.counters
    shown = f"counters: {dict(counters)}; Pants' output: {reader.log}"
    assert counters["local_cache_requests_cached"] == 0, shown
    # Every result the writer uploaded is asked for, and served.
    assert (
        counters["remote_cache_requests"] == writer.counters["remote_cache_write_successes"]
    ), f"{shown}; the writer's: {dict(writer.counters)}"
    # Pants' own processes (building the builder's and runner's PEXes, dependency inference)
    # start locally at once while the cache is asked (speculation delay 0), and a quick one may
    # finish first, which cancels its lookup; the build steps wait for the cache (and
    # test_the_reader_starts_no_image_building_process checks that none of them ran).
    assert (
        counters["remote_cache_requests_cached"]
        + counters["remote_cache_speculation_local_completed_first"]
        == counters["remote_cache_requests"]
    ), shown
    assert counters["remote_cache_requests_uncached"] == 0, shown
    assert counters["remote_cache_read_errors"] == 0, shown
    assert counters["remote_cache_request_timeouts"] == 0, shown
    assert counters["remote_cache_write_attempts"] == 0, shown


def test_the_reader_starts_no_image_building_process(reader: Clone) -> None:
    # Some processes do start (interpreter discovery at least), so the log lines are there to see.
    assert executed_processes(reader.result), reader.started()
    assert builder_processes(reader.result) == [], reader.started()


def test_the_reader_packages_the_writers_images(writer: Clone, reader: Clone) -> None:
    for agent in AGENTS:
        assert reader.outputs.agent(agent)["digest"] == writer.outputs.agent(agent)["digest"]
    assert reader.outputs.metadata == writer.outputs.metadata
    assert reader.outputs.archive_sha256 == writer.outputs.archive_sha256


# Publishing from a fresh machine -----------------------------------------------------------------

# What a CI machine that only publishes sets: no layout or archive in dist/, cache hits' bytes
# fetched only when a step reads them.
_PUBLISH_ONLY = (
    "--cache-content-behavior=defer",
    "--ai-agents-layouts=false",
    "--ai-agents-archives=false",
)


def _router_publishing_to(root: Path, repository: str, code_edit: bool) -> ScratchRepo:
    repo = ScratchRepo.with_example_agents(root / "repo")
    build = repo.root / "agents/router/BUILD"
    build.write_text(
        build.read_text().replace(
            'name="router",', f'name="router",\n    repository="{repository}",'
        )
    )
    if code_edit:
        server = repo.root / "agents/router/router_agent/server.py"
        server.write_text(server.read_text() + "\n# A code change: only the code layer differs.\n")
    return repo


def _store_files(root: Path) -> Set[str]:
    """The digests (hex) of the files of 512 KiB or more in a clone's local store, which Pants
    keeps as plain files named by digest."""
    return {path.name for path in (root / "local/store/immutable/files").glob("*/*")}


def test_a_fresh_machine_publishes_a_code_change_fetching_only_the_changed_layer(
    tmp_path_factory: pytest.TempPathFactory,
    buildgrid: RunningBuildGrid,
    writer: Clone,
    registry: RunningRegistry,
) -> None:
    """Clone C publishes the router as the writer built it; clone D, a fresh machine with the
    warm remote cache, publishes it after a code change: the registry is asked which layers it
    lacks, and only the new code layer is built, stored and uploaded; the unchanged layers'
    blobs are never fetched from the remote cache."""
    repository = f"{registry.address}/remote-cache/router"
    cache = buildgrid.pants_options(read=True, write=False)
    first_root = tmp_path_factory.mktemp("first-publisher")
    first = _router_publishing_to(first_root, repository, code_edit=False)
    _run_with_empty_local_caches(
        first, first_root, *cache, *_PUBLISH_ONLY, "publish", "agents/router:router@accelerator=cpu"
    )
    published = PackagedOutputs.read(first).agent("router")
    assert published["layout"] is None and published["archive"] is None

    second_root = tmp_path_factory.mktemp("second-publisher")
    second = _router_publishing_to(second_root, repository, code_edit=True)
    result = _run_with_empty_local_caches(
        second,
        second_root,
        *cache,
        *_PUBLISH_ONLY,
        "publish",
        "agents/router:router@accelerator=cpu",
    )
    changed = PackagedOutputs.read(second).agent("router")
    before = {layer["kind"]: layer["digest"] for layer in published["images"][0]["layers"]}
    after = {layer["kind"]: layer["digest"] for layer in changed["images"][0]["layers"]}
    assert after["code"] != before["code"]
    unchanged = [layer for layer in published["images"][0]["layers"] if layer["kind"] != "code"]
    assert [layer["digest"] for layer in unchanged] == [
        layer["digest"] for layer in changed["images"][0]["layers"] if layer["kind"] != "code"
    ]
    output = result.stdout + result.stderr
    # The code layer and the config: the only blobs the registry lacked.
    assert f"pushed {repository}@{changed['digest']}: uploaded 2 blobs" in output, output
    stored = _store_files(second_root)
    big = [layer for layer in unchanged if layer["size"] >= 512 * 1024]
    assert big, "the router has no layer big enough for the store to keep as a file"
    fetched = [layer["kind"] for layer in big if layer["digest"].split(":")[1] in stored]
    assert fetched == [], f"unchanged layers fetched from the remote cache: {fetched}"
