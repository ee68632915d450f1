"""The torch example agent (`agents/classifier`) end to end: torch 2.5.1 and its 14 nvidia-*-cu12
wheels from PyPI through the `torch` lock, `accelerator="cuda"` with the CUDA version taken from
that lock, on the Debian Python base (no nvidia/cuda image). Built once, in a scratch repo; the
image loaded into dockerd, run read-only as uid 65532 without a GPU (torch answers on the CPU)
and asked known sentences; then a second agent locking the same torch, which must add no work
for any big wheel: its layers are the first agent's, and so are their build steps.

The slowest test of the suite (a cold build installs ~4.5 GB), so nothing else builds this agent:
the example tree of the other scratch-repo tests (`//agents:tree`) leaves it out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import pytest

from testkit.agent_http import request_json, wait_until_container_healthy
from testkit.components import free_loopback_port
from testkit.pants_output import builder_processes, executed_processes, file_sha256, succeeded
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

    @property
    def layers(self) -> List[Dict[str, Any]]:
        (image,) = self.metadata["images"]
        return list(image["layers"])


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    repo = ScratchRepo.with_example_agents(tmp_path_factory.mktemp("torch") / "repo")
    succeeded(repo.run("package", AGENT, timeout=3600))
    return Built(repo, json.loads((repo.root / METADATA).read_text()))


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
    second = built.repo.run(
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
    succeeded(built.repo.run(other, "package", AGENT, timeout=3600))
    again = json.loads((built.repo.root / METADATA).read_text())
    assert _big_layers(again["images"][0]["layers"]) == _big_layers(built.layers)
    assert again["digest"] == built.metadata["digest"]
