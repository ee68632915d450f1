"""The example agents (`agents/router`, `agents/triage`) end to end through Pants: `package
agents::` in a scratch repo, then each agent's CPU image loaded into dockerd, run read-only as its
nonroot user and asked the known sentences; their layers (shared base and weights) and locks; a
no-op rebuild (nothing written; rebuilds elsewhere are `tests/reproducible`'s); `publish` to a real
registry (the manifest digest `package` printed, every blob skipped on a second push); and `run`
until Ctrl-C, which must leave no container behind.

Needs real components, which CI (`.ci/run`) installs and starts: dockerd, Debian's
`docker-registry` (started by the `registry` fixture), the network to PyPI (the wheels of the
`agents` lock) and to deb.debian.org (the base's .debs). One scratch repo, built once for the
module, serves the tests.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Tuple

import pytest

from testkit.agent_http import request_json, wait_until_container_healthy, wait_until_healthy
from testkit.components import RunningRegistry, free_loopback_port
from testkit.pants_output import PackagedOutputs, executed_processes, file_sha256, succeeded
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

AGENTS = ("router", "triage")
PORTS = {"router": 8080, "triage": 8081}
# Sentences the bundled model is known to route, and the intent each must get.
SENTENCES: Tuple[Tuple[str, str], ...] = (
    ("I was charged twice on my credit card this month", "billing"),
    ("The app keeps crashing when I open the settings page", "tech_support"),
    ("My package still hasn't arrived, where is my delivery?", "shipping"),
    ("I forgot my password and can't sign in", "account"),
)
LAYER_KINDS = ["base", "packages", "weights", "code", "config"]
LOCKS = ("lockfiles/agents.lock", "lockfiles/debian-bookworm-python.lock.json")
CENTROIDS = "agents/models/router/router-centroids.npy"
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
UNCOMPRESSED_LAYER = "application/vnd.oci.image.layer.v1.tar"
NONROOT = "65532"


@dataclass(frozen=True)
class Built:
    """The scratch repo after `package agents::`, with what that run wrote and printed."""

    repo: ScratchRepo
    output: str
    outputs: PackagedOutputs

    def agent(self, name: str) -> Dict[str, Any]:
        return self.outputs.agent(name)

    def archive(self, metadata: Mapping[str, Any]) -> Path:
        return self.repo.root / "dist" / metadata["archive"]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    repo = ScratchRepo.with_example_agents(tmp_path_factory.mktemp("agents") / "repo")
    output = succeeded(repo.run("package", "agents::"))
    return Built(repo=repo, output=output, outputs=PackagedOutputs.read(repo))


def _layers(metadata: Mapping[str, Any]) -> List[Dict[str, Any]]:
    (image,) = metadata["images"]
    return list(image["layers"])


def _layer(metadata: Mapping[str, Any], kind: str) -> Dict[str, Any]:
    (layer,) = (layer for layer in _layers(metadata) if layer["kind"] == kind)
    return layer


def _summary(metadata: Mapping[str, Any]) -> str:
    """The start of the line `package` prints for an agent."""
    return f"{metadata['target']}: {metadata['digest']} ({len(_layers(metadata))} layers, "


# HTTP -------------------------------------------------------------------------------------------


def _ask(agent: str, base_url: str) -> str:
    """Ask `agent` every known sentence, assert the intents; return the model version answering."""
    if agent == "router":
        versions = set()
        for text, intent in SENTENCES:
            status, body = request_json(f"{base_url}/route", {"text": text})
            assert status == 200, body
            assert body["intent"] == intent, (text, body)
            assert 0 < body["score"] <= 1, body
            versions.add(body["model"])
        (version,) = versions
        return str(version)
    status, body = request_json(f"{base_url}/triage", {"tickets": [text for text, _ in SENTENCES]})
    assert status == 200, body
    for index, (text, intent) in enumerate(SENTENCES):
        assert body["queues"][intent] == [index], (text, body)
    assert body["counts"] == {intent: len(queue) for intent, queue in body["queues"].items()}
    assert sum(body["counts"].values()) == len(SENTENCES), body
    return str(body["model"])


# package ----------------------------------------------------------------------------------------


def test_package_prints_every_agent_digest_it_writes(built: Built) -> None:
    assert {built.agent(name)["target"] for name in AGENTS} <= set(built.outputs.metadata)
    for target, metadata in built.outputs.metadata.items():
        digest = metadata["digest"]
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), target
        assert _summary(metadata) in built.output, target
        (image,) = metadata["images"]
        assert image["manifest"]["digest"] == digest
        assert image["manifest"]["size"] == metadata["size"]
        assert built.archive(metadata).is_file()


@pytest.mark.parametrize("agent", AGENTS)
def test_metadata_describes_the_cpu_image(built: Built, agent: str) -> None:
    metadata = built.agent(agent)
    assert metadata["archive"].startswith(f"agents.{agent}/")
    assert metadata["mediaType"] == OCI_MANIFEST
    assert (metadata["repository"], metadata["tags"]) == (agent, ["latest"])
    assert metadata["exposedPorts"] == [f"{PORTS[agent]}/tcp"]
    (image,) = metadata["images"]
    assert image["platform"] == metadata["docker"]["platform"] == "linux/amd64"
    assert image["imageID"] == image["config"]["digest"] == metadata["docker"]["imageID"]
    assert image["base"]["target"] == "agents/base:bookworm-python"


@pytest.mark.parametrize("agent", AGENTS)
def test_layers_are_ordered_by_change_rate_and_weights_are_uncompressed(
    built: Built, agent: str
) -> None:
    metadata = built.agent(agent)
    layers = _layers(metadata)
    assert [layer["kind"] for layer in layers] == LAYER_KINDS
    (image,) = metadata["images"]
    base_digests = [layer["digest"] for layer in image["base"]["layers"]]
    assert [layer["digest"] for layer in layers if layer["kind"] == "base"] == base_digests
    weights = _layer(metadata, "weights")
    assert weights["mediaType"] == UNCOMPRESSED_LAYER
    # Uncompressed: the blob is the diff itself.
    assert weights["digest"] == weights["diffID"]
    assert "router-centroids.npy" in weights["holds"]
    assert "numpy" in _layer(metadata, "packages")["holds"]
    assert "etc/ai-agent/agent.yaml" in _layer(metadata, "config")["holds"]


def test_agents_share_base_and_weights_layers_but_not_code_or_config(built: Built) -> None:
    router, triage = built.agent("router"), built.agent("triage")
    for kind in ("base", "weights"):
        assert _layer(router, kind) == _layer(triage, kind), kind
    # The packages layer is shared exactly when both agents install the same wheels.
    router_packages, triage_packages = _layer(router, "packages"), _layer(triage, "packages")
    assert (router_packages["holds"] == triage_packages["holds"]) == (
        router_packages == triage_packages
    ), (router_packages, triage_packages)
    for kind in ("code", "config"):
        assert _layer(router, kind)["digest"] != _layer(triage, kind)["digest"], kind
    assert router["digest"] != triage["digest"]


def test_metadata_records_the_locks_it_was_built_from(built: Built) -> None:
    locks = [{"path": path, "sha256": file_sha256(built.repo.root / path)} for path in LOCKS]
    for target, metadata in built.outputs.metadata.items():
        assert metadata["locks"] == locks, target


# docker -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("agent", AGENTS)
def test_image_runs_read_only_as_nonroot_and_answers_known_sentences(
    built: Built, agent: str, docker_client: Any, loaded_images: List[str]
) -> None:
    metadata = built.agent(agent)
    tag = f"{metadata['repository']}:{metadata['tags'][0]}"
    loaded_images.append(tag)
    with open(built.archive(metadata), "rb") as archive:
        docker_client.images.load(archive)
    image = docker_client.images.get(tag)
    assert image.id == metadata["docker"]["imageID"]
    config = image.attrs["Config"]
    assert config["User"] == NONROOT
    assert f"{PORTS[agent]}/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD"

    host_port = free_loopback_port()
    container = docker_client.containers.run(
        image.id,
        detach=True,
        read_only=True,
        ports={f"{PORTS[agent]}/tcp": ("127.0.0.1", host_port)},
    )
    try:
        container.reload()
        assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
        assert container.attrs["Config"]["User"] == NONROOT
        base_url = f"http://127.0.0.1:{host_port}"
        wait_until_container_healthy(container, f"{base_url}/healthz", timeout=30)
        version = _ask(agent, base_url)
        # Both agents answer with the bundled weights (the model's version is their sha256).
        assert version == file_sha256(built.repo.root / CENTROIDS)[:12]
    finally:
        container.remove(force=True)


# reproducibility --------------------------------------------------------------------------------


def _ref_names(metadata: Mapping[str, Any]) -> List[str]:
    return list(metadata["layout"]["refNames"])


def _dist_files(repo: ScratchRepo) -> Dict[str, Tuple[int, int]]:
    """Every file in dist/ with its inode and mtime: what tells a rewrite from no write."""
    dist = repo.root / "dist"
    return {
        str(path.relative_to(dist)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in sorted(dist.rglob("*"))
        if path.is_file()
    }


def test_packaging_again_without_a_change_writes_nothing(built: Built) -> None:
    before = _dist_files(built.repo)
    output = succeeded(built.repo.run("package", "agents::"))
    assert _dist_files(built.repo) == before
    assert PackagedOutputs.read(built.repo) == built.outputs
    assert "Wrote dist/" not in output
    for metadata in built.outputs.metadata.values():
        assert _summary(metadata) in output
        assert f"Unchanged dist/{metadata['archive']}" in output


def test_archives_are_hardlinked_from_the_store_and_a_lost_file_alone_is_written(
    built: Built,
) -> None:
    metadata = built.agent("router")
    archive = built.archive(metadata)
    # Pants' store holds the other link (where dist/ and the store share a filesystem, as here).
    assert archive.stat().st_nlink >= 2
    # So are the layout's big blobs (Pants keeps files from 512 KiB up as files of their own).
    layout = built.repo.root / "dist" / metadata["layout"]["directory"]
    for layer in _layers(metadata):
        if layer["size"] >= 512 * 1024:
            blob = layout / "blobs/sha256" / layer["digest"].split(":")[1]
            assert blob.stat().st_nlink >= 2, layer
    described = archive.with_name(archive.name + ".json")
    before = _dist_files(built.repo)
    described.unlink()
    output = succeeded(built.repo.run("package", str(metadata["target"])))
    assert f"Wrote dist/{metadata['archive']}.json" in output
    assert f"Unchanged dist/{metadata['archive']}" in output
    after = _dist_files(built.repo)
    changed = {path for path in before if after[path] != before[path]}
    assert changed == {f"{metadata['archive']}.json"}
    assert json.loads(described.read_text()) == metadata


def test_the_layout_is_the_image_and_without_archives_no_archive_is_built(
    built: Built, skopeo: str, umoci: str
) -> None:
    metadata = built.agent("router")
    target, archive = str(metadata["target"]), built.archive(metadata)
    layout = built.repo.root / "dist" / metadata["layout"]["directory"]
    (name,) = metadata["layout"]["refNames"]
    assert name == "router:latest"
    inspected = subprocess.run(
        [skopeo, "inspect", f"oci:{layout}:{name}"], check=True, capture_output=True, text=True
    )
    assert json.loads(inspected.stdout)["Digest"] == metadata["digest"]
    # The layout holds the archive's blobs, and names its image as the archive does by its tag.
    with tarfile.open(archive) as tar:
        members = {member.name: member for member in tar.getmembers() if member.isfile()}
        for member_name, member in members.items():
            if member_name.startswith("blobs/"):
                extracted = tar.extractfile(member)
                assert extracted is not None
                assert (layout / member_name).read_bytes() == extracted.read(), member_name
        archived_index = tar.extractfile(members["index.json"])
        assert archived_index is not None
        (archived,) = json.loads(archived_index.read())["manifests"]
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    (entry,) = (e for e in entries if e["annotations"][ANNOTATION_REF_NAME] == name)
    assert {**entry, "annotations": None} == {**archived, "annotations": None}
    assert entry["annotations"]["ai-agent.target"] == target
    # One layout for every example image (the base's too), each under its own name.
    in_layout = [e["annotations"][ANNOTATION_REF_NAME] for e in entries]
    assert len(set(in_layout)) == len(in_layout)
    assert {
        ref for described in built.outputs.metadata.values() for ref in _ref_names(described)
    } | {"bookworm-python:latest"} == set(in_layout)
    listed = subprocess.run(
        [umoci, "list", "--layout", str(layout)], check=True, capture_output=True, text=True
    )
    assert sorted(listed.stdout.split()) == sorted(in_layout)

    try:
        result = built.repo.run(
            "--ai-agents-archives=false", "--keep-sandboxes=always", "package", target
        )
        output = succeeded(result)
        assert not any(
            name.startswith("Writing the image archive") for name in executed_processes(result)
        ), executed_processes(result)
        assert not archive.exists()
        without = json.loads(archive.with_name(archive.name + ".json").read_text())
        assert without["archive"] is None
        assert {**without, "archive": metadata["archive"]} == metadata
        assert f"Unchanged dist/oci as {name}" in output
    finally:
        succeeded(built.repo.run("package", target))
    assert archive.is_file()


# publish ----------------------------------------------------------------------------------------


@pytest.fixture
def triage_with_repository(built: Built, registry: RunningRegistry) -> Iterator[str]:
    """The scratch repo's triage BUILD given `repository` on the test registry and two tags (put
    back afterwards); yields the repository. (Not the router: both its accelerator variants
    would get the names, which `package` refuses.)"""
    path = built.repo.root / "agents/triage/BUILD"
    original = path.read_text()
    repository = f"{registry.address}/agents/triage"
    assert 'name="triage",' in original
    path.write_text(
        original.replace(
            'name="triage",',
            f'name="triage",\n    repository="{repository}",\n    image_tags=["1.0", "latest"],',
        )
    )
    try:
        yield repository
    finally:
        path.write_text(original)


def _registry_manifest_digest(registry: RunningRegistry, name: str, tag: str) -> str:
    request = urllib.request.Request(
        f"{registry.url}/v2/{name}/manifests/{tag}", method="HEAD", headers={"Accept": OCI_MANIFEST}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == OCI_MANIFEST
        return str(response.headers["Docker-Content-Digest"])


def _registry_get(registry: RunningRegistry, path: str, accept: str = "") -> bytes:
    request = urllib.request.Request(f"{registry.url}/v2/{path}", headers={"Accept": accept})
    with urllib.request.urlopen(request, timeout=10) as response:
        return bytes(response.read())


def _check_attached(built: Built, registry: RunningRegistry, metadata: Dict[str, Any]) -> None:
    """The SBOM and provenance in dist/ are the image's referrers in the registry (which has no
    referrers API: listed by the tag `sha256-<hex>`), byte for byte."""
    digest, name = metadata["digest"], metadata["repository"].split("/", 1)[1]
    listing = json.loads(
        _registry_get(registry, f"{name}/manifests/sha256-{digest[7:]}", OCI_INDEX)
    )
    referrers = {entry["artifactType"]: entry["digest"] for entry in listing["manifests"]}
    documents = {
        "application/spdx+json": metadata["sbom"]["spdx"][0],
        "application/vnd.in-toto+json": metadata["sbom"]["provenance"],
    }
    assert set(referrers) == set(documents), listing
    for artifact_type, path in documents.items():
        manifest = json.loads(
            _registry_get(registry, f"{name}/manifests/{referrers[artifact_type]}", OCI_MANIFEST)
        )
        assert (manifest["artifactType"], manifest["subject"]["digest"]) == (artifact_type, digest)
        (layer,) = manifest["layers"]
        document = _registry_get(registry, f"{name}/blobs/{layer['digest']}")
        assert document == (built.repo.root / "dist" / path).read_bytes()


def test_publish_pushes_the_packaged_digest_to_every_tag_then_skips_every_blob(
    built: Built, registry: RunningRegistry, triage_with_repository: str
) -> None:
    repository = triage_with_repository
    target, digest = built.agent("triage")["target"], built.agent("triage")["digest"]

    # One Pants run packages (writing the archive with its new name and tags) and publishes.
    first = succeeded(built.repo.run("package", "publish", target))
    metadata = PackagedOutputs.read(built.repo).agent("triage")
    # Repository and tags name the archive's image, not the manifest: its digest is unchanged.
    assert metadata["digest"] == digest
    assert (metadata["repository"], metadata["tags"]) == (repository, ["1.0", "latest"])
    assert _summary(metadata) in first
    assert f"tagged {repository}:1.0, {repository}:latest;" in first

    blobs = len(_layers(metadata)) + 1  # the layers and the config
    assert f"pushed {repository}@{digest}: uploaded {blobs} blobs (" in first, first
    for tag in ("1.0", "latest"):
        assert _registry_manifest_digest(registry, "agents/triage", tag) == digest
    # Its SBOM and provenance are attached to it (one platform: both to its manifest).
    assert (
        f"referrers of {repository}@{digest}: attached 2 referrers (0 already there; referrers"
        f" tags written: sha256-{digest[7:]});" in first
    ), first
    _check_attached(built, registry, metadata)

    again = succeeded(built.repo.run("publish", target))
    assert (
        f"pushed {repository}@{digest}: uploaded 0 blobs (0 B), skipped {blobs} (" in again
    ), again
    assert f"{blobs} already present)" in again, again
    assert (
        f"referrers of {repository}@{digest}: attached 0 referrers (2 already there; referrers"
        " tags written: none); uploaded 0 blobs (0 B)" in again
    ), again


# run --------------------------------------------------------------------------------------------


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _started_container(docker_client: Any, log: Callable[[], str], timeout: float = 10) -> Any:
    """The container the runner announced in the log (`Running <image> as <short id>`)."""
    deadline = time.monotonic() + timeout
    while not (announced := re.search(r"^Running \S+ as ([0-9a-f]+)$", log(), re.MULTILINE)):
        if time.monotonic() > deadline:
            pytest.fail(f"the runner named no container:\n{log()}", pytrace=False)
        time.sleep(0.2)
    return docker_client.containers.get(announced.group(1))


def _remove_image(docker_client: Any, image_id: str) -> None:
    if image_id in {image.id for image in docker_client.images.list(all=True)}:
        docker_client.images.remove(image_id, force=True)


def _exists(docker_client: Any, container_id: str) -> bool:
    return bool(docker_client.containers.list(all=True, sparse=True, filters={"id": container_id}))


def test_pants_run_serves_on_the_agent_port_and_ctrl_c_removes_the_container(
    built: Built, docker_client: Any, loaded_images: List[str], tmp_path: Path
) -> None:
    port = PORTS["router"]
    if not _port_is_free(port):
        pytest.skip(f"port {port}, which `pants run` of the router publishes, is in use")
    metadata = built.agent("router")
    loaded_images.append(f"{metadata['repository']}:{metadata['tags'][0]}")
    # Not in Docker yet, so that `run` streams it in.
    _remove_image(docker_client, metadata["docker"]["imageID"])
    log_path = tmp_path / "pants-run.log"

    def log() -> str:
        return log_path.read_text(errors="replace")

    with open(log_path, "wb") as output:
        # A session of its own, so that a failing test can kill whatever Pants started.
        process = built.repo.popen(
            "run",
            metadata["target"],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    container = None
    try:
        wait_until_healthy(
            f"http://127.0.0.1:{port}/healthz",
            timeout=300,
            still_running=lambda: process.poll() is None,
            diagnostics=log,
        )
        container = _started_container(docker_client, log)
        assert container.image.id == metadata["docker"]["imageID"]
        assert container.status == "running"
        assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
        bindings = container.attrs["HostConfig"]["PortBindings"]
        assert [binding["HostPort"] for binding in bindings[f"{port}/tcp"]] == [str(port)]
        status, body = request_json(f"http://127.0.0.1:{port}/route", {"text": SENTENCES[0][0]})
        assert (status, body["intent"]) == (200, SENTENCES[0][1]), body

        # Pants runs the runner in a session of its own: Ctrl-C reaches it only through Pants.
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        left = False
        if container is not None and _exists(docker_client, container.id):
            left = True
            container.remove(force=True)  # never leave it behind, even when failing
    assert container is not None
    assert not left, f"`pants run` left its container {container.short_id} behind:\n{log()}"
    assert f"SIGINT: stopping {container.short_id}" in log(), log()
    assert f"Loaded {metadata['docker']['imageID']} into Docker, streamed" in log(), log()


def test_pants_run_of_the_cuda_variant_says_the_daemon_has_no_nvidia_runtime(
    built: Built, docker_client: Any, loaded_images: List[str]
) -> None:
    if "nvidia" in docker_client.info().get("Runtimes", {}):
        pytest.skip("this dockerd has the NVIDIA runtime: the CUDA variant would really run")
    (cuda,) = (
        metadata
        for metadata in built.outputs.metadata.values()
        if metadata["accelerator"] == "cuda12.4"
    )
    loaded_images.append(f"{cuda['repository']}:{cuda['tags'][0]}")
    result = built.repo.run("run", cuda["target"], timeout=600)
    assert result.returncode != 0, result.stdout
    output = result.stdout + result.stderr
    assert "asks for GPUs but the Docker daemon has no NVIDIA runtime" in output, output
    assert "Install the NVIDIA Container Toolkit" in output, output


def test_pants_run_on_a_taken_port_names_the_agent_and_port_and_leaves_no_container(
    built: Built, docker_client: Any, loaded_images: List[str]
) -> None:
    port = PORTS["router"]
    metadata = built.agent("router")
    image_id = metadata["docker"]["imageID"]
    # In Docker already (from the archive in dist/), so that `run` does not load it again.
    with open(built.repo.root / "dist" / metadata["archive"], "rb") as archive:
        loaded = docker_client.images.load(archive)
    loaded_images.extend(tag for image in loaded for tag in image.tags)
    taker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    left: List[str] = []
    try:
        # This test holds the port (a container of an earlier test may still be letting go).
        deadline = time.monotonic() + 60
        while True:
            try:
                taker.bind(("0.0.0.0", port))
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"port {port} stayed in use for a minute")
                time.sleep(0.5)
        taker.listen()
        result = built.repo.run("run", metadata["target"], timeout=300)
    finally:
        taker.close()
        for container in docker_client.containers.list(all=True, filters={"ancestor": image_id}):
            left.append(container.short_id)
            container.remove(force=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"{image_id} is in Docker already: not loaded again" in output, output
    assert (
        f"error: {metadata['target']} cannot publish its port(s) {port} on this host: one is in"
        " use by another process or container. Stop that, or give the agent other `ports`."
        in output
    ), output
    assert "500 Server Error" not in output, output
    assert left == [], f"containers left behind: {left}"
