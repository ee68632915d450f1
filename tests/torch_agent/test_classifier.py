"""The torch example agent (`agents/classifier`) end to end: torch 2.5.1 and its 14 nvidia-*-cu12
wheels from PyPI through the `torch` lock, `accelerator="cuda"` with the CUDA version taken from
that lock, on the Debian Python base (no nvidia/cuda image). Built once, in a scratch repo; the
image loaded into dockerd, run read-only as uid 65532 without a GPU (torch answers on the CPU)
and asked known sentences; then a second agent locking the same torch, which must add no work
for any big wheel: its layers are the first agent's, and so are their build steps.

The build also writes every step's result to a real BuildGrid remote cache, configured as the
README says, and another checkout with empty local caches reads the image back from it with
`cache_content_behavior = "defer"`: the setting under which a read the server refuses fails the
whole goal, and the reads of a torch image's many big layers at once overran a BuildGrid at its
default limits (2 of 2 such runs failed, `ResourceExhausted`, 2026-12-05).

The slowest test of the suite (a cold build installs ~4.5 GB), so nothing else builds this agent:
the example tree of the other scratch-repo tests (`//agents:tree`) leaves it out.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence, Tuple

import pytest

from testkit.agent_http import request_json, wait_until_container_healthy
from testkit.components import RunningBuildGrid, free_loopback_port
from testkit.pants_output import (
    builder_processes,
    executed_processes,
    file_sha256,
    stats_counters,
    succeeded,
)
from testkit.pants_repo import ScratchRepo
from testkit.sbom import check_image_supply_chain

pytestmark = pytest.mark.integration

AGENT = "agents/classifier:classifier"
METADATA = "dist/agents.classifier/classifier.tar.json"
PORT = 8082
NONROOT = "65532"
WEIGHTS = "agents/models/classifier/classifier-weights.npy"
SENTENCES = (
    ("I was charged twice on my credit card this month", "billing"),
    ("The app keeps crashing when I open the settings page", "tech_support"),
    ("My package still hasn't arrived, where is my delivery?", "shipping"),
    ("I forgot my password and can't sign in", "account"),
)
# What torch 2.5.1 on PyPI brings for linux/amd64 that unpacks to more than the 64 MiB threshold,
# each in a layer of its own: torch, triton and the biggest CUDA 12.4 libraries (the smaller
# nvidia-* wheels share the packages layer).
BIG_WHEELS = {
    "nvidia-cublas-cu12",
    "nvidia-cudnn-cu12",
    "nvidia-cufft-cu12",
    "nvidia-curand-cu12",
    "nvidia-cusolver-cu12",
    "nvidia-cusparse-cu12",
    "nvidia-nccl-cu12",
    "torch",
    "triton",
}


@dataclass(frozen=True)
class Built:
    repo: ScratchRepo
    metadata: Dict[str, Any]
    # The local store of this module's own, empty before the first build, so that every step of
    # that build runs and reaches the remote cache.
    store: Tuple[str, ...]
    counters: Dict[str, int]

    @property
    def layers(self) -> List[Dict[str, Any]]:
        (image,) = self.metadata["images"]
        return list(image["layers"])

    def run(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        """Pants in the scratch repo, on the first build's local store."""
        return self.repo.run(*self.store, *args, timeout=timeout)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, buildgrid: RunningBuildGrid) -> Built:
    root = tmp_path_factory.mktemp("torch")
    repo = ScratchRepo.with_example_agents(root / "repo")
    store = (f"--local-store-dir={root / 'store'}",)
    result = repo.run(
        *store,
        *buildgrid.pants_options(read=False, write=True),
        "--stats-log",
        "package",
        AGENT,
        timeout=3600,
    )
    succeeded(result)
    metadata = json.loads((repo.root / METADATA).read_text())
    return Built(repo, metadata, store, stats_counters(result))


def test_every_byte_of_the_torch_image_is_accounted_for_by_a_valid_sbom(built: Built) -> None:
    """torch, triton and every nvidia-*-cu12 wheel in the SBOM with its sha256 and purl, and
    every file of the ~3 GB of layers mapped to it (RECORD hashes checked) or to the base."""
    reports = check_image_supply_chain(built.repo.root / "dist", built.repo.root / METADATA)
    (report,) = reports.values()
    assert report["owners"]["wheel"] > 10000
    (spdx,) = built.metadata["sbom"]["spdx"]
    document = json.loads((built.repo.root / "dist" / spdx).read_text())
    names = {package["name"] for package in document["packages"]}
    assert BIG_WHEELS <= names
    torch = next(package for package in document["packages"] if package["name"] == "torch")
    assert torch["externalRefs"][0]["referenceLocator"] == "pkg:pypi/torch@2.5.1"


def _big_layers(layers: Sequence[Mapping[str, Any]]) -> Dict[str, Mapping[str, Any]]:
    """The big-package layers by the project they hold (`holds` is "torch 2.5.1")."""
    return {
        layer["holds"].split(" ")[0]: layer for layer in layers if layer["kind"] == "big package"
    }


def test_torch_and_its_cuda_wheels_get_layers_of_their_own_on_the_python_base(
    built: Built,
) -> None:
    metadata = built.metadata
    assert metadata["accelerator"] == "cuda"
    assert [layer["kind"] for layer in built.layers[:1]] == ["base"]
    assert built.layers[0]["holds"] == "agents/base:bookworm-python"
    big = _big_layers(built.layers)
    assert set(big) == BIG_WHEELS, sorted(big)
    assert big["torch"]["holds"] == "torch 2.5.1"
    # The rest (numpy, jinja2, filelock, ...) share one layer, after the big ones.
    kinds = [layer["kind"] for layer in built.layers]
    assert kinds == ["base", *["big package"] * len(BIG_WHEELS)] + [
        "packages",
        "weights",
        "code",
        "config",
    ]
    assert "numpy 2.2.6" in built.layers[len(BIG_WHEELS) + 1]["holds"]


def test_the_cuda_settings_come_from_the_lock(built: Built, docker_client: Any) -> None:
    with open(built.repo.root / "dist" / built.metadata["archive"], "rb") as archive:
        docker_client.images.load(archive)
    image = docker_client.images.get(built.metadata["docker"]["imageID"])
    config = image.attrs["Config"]
    env = dict(entry.split("=", 1) for entry in config["Env"])
    assert config["Labels"]["ai-agent.cuda.version"] == "12.4"
    assert env["NVIDIA_REQUIRE_CUDA"].startswith("cuda>=12.4")
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    # The dynamic loader finds the nvidia-* wheels' libraries (for native code linking them).
    site = "/opt/agent/lib/python3.11/site-packages"
    assert f"{site}/nvidia/cuda_runtime/lib" in env["LD_LIBRARY_PATH"].split(":")
    assert config["User"] == NONROOT


def test_it_answers_on_the_cpu_read_only_as_nonroot(
    built: Built, docker_client: Any, loaded_images: List[str]
) -> None:
    tag = f"{built.metadata['repository']}:{built.metadata['tags'][0]}"
    loaded_images.append(tag)
    with open(built.repo.root / "dist" / built.metadata["archive"], "rb") as archive:
        docker_client.images.load(archive)
    host_port = free_loopback_port()
    container = docker_client.containers.run(
        tag,
        detach=True,
        read_only=True,
        user=NONROOT,
        ports={f"{PORT}/tcp": ("127.0.0.1", host_port)},
    )
    try:
        base_url = f"http://127.0.0.1:{host_port}"
        wait_until_container_healthy(container, f"{base_url}/healthz", timeout=120)
        status, health = request_json(f"{base_url}/healthz")
        assert status == 200
        accelerator = health["accelerator"]
        assert (accelerator["torch"], accelerator["torch_cuda"]) == ("2.5.1+cu124", "12.4")
        # libcudart.so.12 from the nvidia-cuda-runtime-cu12 wheel, found by soname.
        assert accelerator["cudart"] == "12.4", accelerator
        assert (accelerator["cuda_available"], accelerator["device"]) == (False, "cpu")
        for text, intent in SENTENCES:
            status, body = request_json(f"{base_url}/route", {"text": text})
            assert status == 200, body
            assert body["intent"] == intent, (text, body)
            assert body["model"] == file_sha256(built.repo.root / WEIGHTS)[:12]
    finally:
        container.remove(force=True)


def test_a_checkout_with_empty_caches_reads_the_image_from_the_remote_cache(
    built: Built, buildgrid: RunningBuildGrid, tmp_path: Path
) -> None:
    """Pants at its default RPC concurrency, `cache_content_behavior = "defer"`: every lookup
    hits, nothing is refused, no build step starts, and the layout placed in `dist/` (every
    layer's blob read from the cache) is the first build's image."""
    written = built.counters
    assert written["remote_cache_write_errors"] == 0, written
    assert written["remote_cache_write_successes"] == written["remote_cache_write_attempts"] > 0
    reader = ScratchRepo.with_example_agents(tmp_path / "repo")
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()
    result = reader.run(
        f"--local-store-dir={tmp_path / 'store'}",
        f"--local-execution-root-dir={sandboxes}",
        "--keep-sandboxes=always",
        "--cache-content-behavior=defer",
        *buildgrid.pants_options(read=True, write=False),
        "--stats-log",
        "--ai-agents-archives=false",
        "package",
        AGENT,
        timeout=1800,
    )
    succeeded(result)
    counters = stats_counters(result)
    shown = f"counters: {counters}; executed: {executed_processes(result)}"
    assert counters["remote_cache_requests_cached"] > 0, shown
    for failed in ("requests_uncached", "read_errors", "request_timeouts"):
        assert counters[f"remote_cache_{failed}"] == 0, shown
    assert builder_processes(result) == [], shown
    metadata = json.loads((reader.root / METADATA).read_text())
    assert metadata["digest"] == built.metadata["digest"]
    blobs = reader.root / "dist" / metadata["layout"]["directory"] / "blobs" / "sha256"
    for layer in built.layers:
        blob = blobs / layer["digest"].split(":", 1)[1]
        assert blob.stat().st_size == layer["size"], layer["holds"]


def test_a_second_agent_locking_the_same_torch_adds_no_work_for_its_big_wheels(
    built: Built, tmp_path: Path
) -> None:
    built.repo.write(
        {
            "agents/classifier2/BUILD": (
                "ai_agent(name='classifier2', resolve='torch', accelerator='cuda',"
                " entry_point='classifier_agent', dependencies=['agents/classifier:src'],"
                " weights=['//agents/models/classifier:weights'])\n"
            ),
            "agents/classifier2/agent.yaml": "name: classifier2\nenv:\n  PORT: 8083\n",
        }
    )
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()
    second = built.run(
        "--keep-sandboxes=always",
        f"--local-execution-root-dir={sandboxes}",
        "package",
        "agents/classifier2:classifier2",
        timeout=1800,
    )
    succeeded(second)
    ran = builder_processes(second)
    shown = f"executed: {executed_processes(second)}"
    # No wheel was chosen, fetched, grouped or installed again: the second agent's steps for its
    # third-party packages are the first's, to the byte; only its config layer and its archive
    # are new.
    again = ("Choosing the locked wheels", "Fetching", "Grouping", "Installing")
    assert not [name for name in ran if name.startswith(again)], shown
    metadata = json.loads(
        (built.repo.root / "dist/agents.classifier2/classifier2.tar.json").read_text()
    )
    (image,) = metadata["images"]
    assert _big_layers(image["layers"]) == _big_layers(built.layers)


def test_another_builder_python_writes_the_same_image(built: Built) -> None:
    """Same inputs, same bytes, whichever CPython runs the build steps, the big layers' parallel
    gzip included: zlib adds an empty block when a sync flush fills the caller's output buffer
    exactly, and CPython 3.9 sized that buffer so that 3 of the 9 big layers got 5 more bytes
    than with 3.11 (now every block's sync flush comes after a `Z_BLOCK` flush)."""
    other = "--ai-agents-builder-interpreter-constraints=['CPython==3.9.*']"
    succeeded(built.run(other, "package", AGENT, timeout=3600))
    again = json.loads((built.repo.root / METADATA).read_text())
    assert _big_layers(again["images"][0]["layers"]) == _big_layers(built.layers)
    assert again["digest"] == built.metadata["digest"]
