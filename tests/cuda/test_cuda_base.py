"""CUDA base selection end to end, through the real `./pants package`: a CUDA agent without
`base` is built on the `[ai-agents].cuda_bases` entry for its CUDA version and flavour, through
the `oci_base` target that pins that image, and gets the NVIDIA runtime environment and the
`ai-agent.cuda.*` labels. (Wrong CUDA settings, refused before any layer is built, are
`plugins/ai_agent/util_rules/platform_base_test.py`'s.)

Real components: Pants 2.17 with this plugin in a scratch repo (the real pants.toml and
lockfiles), the local registry, dockerd, and the network: deb.debian.org for the Debian base's
.debs on a cold cache (PyPI only through the agents resolve's lock, which these agents use no
wheel of). nvcr.io and Docker Hub are unreachable, so `nvidia/cuda:12.4.1-runtime-ubuntu22.04` is
a stand-in with its shape: the repo's Debian bookworm Python base plus a layer with CUDA's
directory layout (a placeholder libcudart, never executed: there is no GPU here) and the real
image's Env and maintainer label, built and pushed with the builder's command line
(`python -m ai_agent.oci layer|image|push`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import pytest
import toml

import ai_agent
from testkit.components import RunningRegistry
from testkit.pants_output import succeeded
from testkit.pants_repo import ScratchRepo

pytestmark = pytest.mark.integration

PLUGIN_ROOT = str(Path(ai_agent.__file__).resolve().parents[1])
CUDA_TAG = "12.4.1-runtime-ubuntu22.04"
LIBCUDART = "usr/local/cuda-12.4/targets/x86_64-linux/lib/libcudart.so.12"
LIBCUDART_CONTENT = "placeholder for CUDA 12.4's libcudart.so.12 (never loaded here)\n"
CUDA_PATH = (
    "/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
    ":/sbin:/bin"
)
# nvidia/cuda:12.4.1-runtime-ubuntu22.04's Env (the parts the plugin and the NVIDIA Container
# Toolkit read), plus PYTHON_VERSION: the plugin takes a registry base's Python from it and runs
# /usr/local/bin/python3.X.
CUDA_ENV = {
    "PATH": CUDA_PATH,
    "NVARCH": "x86_64",
    "CUDA_VERSION": "12.4.1",
    "NVIDIA_REQUIRE_CUDA": "cuda>=12.4 brand=tesla,driver>=470",
    "LD_LIBRARY_PATH": "/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
    "NVIDIA_VISIBLE_DEVICES": "all",
    "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
    "PYTHON_VERSION": "3.11.2",
}
CUDA_LABELS = {"maintainer": "NVIDIA CORPORATION <cudatools@nvidia.com>"}

DEBIAN_ARCHIVE = "dist/base/bookworm-python.tar"
CUDA_LOCK = "lockfiles/oci-cuda.lock.json"
GPU_ARCHIVE = "dist/agents.gpu/gpu.tar"
GPU_TAG = "gpu:latest-cuda12.4"

APP = """\
import json
import os
import sys

with open("/usr/local/cuda/lib64/libcudart.so.12") as libcudart:
    placeholder = libcudart.read()
print(
    json.dumps(
        {
            "python": list(sys.version_info[:2]),
            "executable": sys.executable,
            "uid": os.getuid(),
            "NVIDIA_REQUIRE_CUDA": os.environ["NVIDIA_REQUIRE_CUDA"],
            "CUDA_VERSION": os.environ["CUDA_VERSION"],
            "libcudart": placeholder,
        },
        sort_keys=True,
    )
)
"""

AGENTS_DEFAULTS = """\
__defaults__(
    {
        (python_sources, python_source): dict(
            resolve="agents", interpreter_constraints=["CPython==3.11.*"]
        ),
    }
)
"""


def _oci(*args: str) -> str:
    """Run the builder's command line, `python -m ai_agent.oci ARGS`, as build processes do."""
    result = subprocess.run(
        [sys.executable, "-m", "ai_agent.oci", *args],
        env={**os.environ, "PYTHONPATH": PLUGIN_ROOT},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, f"ai_agent.oci {args[0]}: {result.stderr}"
    return result.stdout


def _agent_files(directory: str, fields: str) -> Dict[str, str]:
    """An agent `agents/<directory>:<name>` with a stdlib-only app and its own agent.yaml;
    `fields` may replace its `dependencies`."""
    dependencies = "" if "dependencies=" in fields else 'dependencies=[":src"], '
    return {
        f"agents/{directory}/BUILD": (
            'python_sources(name="src")\n'
            f'ai_agent(entry_point="app", resolve="agents", {dependencies}{fields})\n'
        ),
        f"agents/{directory}/app.py": APP,
        f"agents/{directory}/agent.yaml": f"name: {directory}\n",
    }


@dataclass(frozen=True)
class CudaBase:
    """The stand-in as pushed: its reference, manifest digest and layers (descriptor + diffID),
    the Debian base's first."""

    reference: str
    manifest_digest: str
    layers: List[Dict[str, Any]]

    @property
    def layer_digests(self) -> List[str]:
        return [layer["digest"] for layer in self.layers]

    @property
    def diff_ids(self) -> List[str]:
        return [layer["diffID"] for layer in self.layers]


@pytest.fixture(scope="module")
def reference(registry: RunningRegistry) -> str:
    return f"{registry.address}/nvidia/cuda:{CUDA_TAG}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory, reference: str) -> ScratchRepo:
    """The scratch repo: the table's 12.4/runtime entry overridden with the stand-in, the
    `oci_base` that pins it, and the Debian base."""
    repo = ScratchRepo.create(tmp_path_factory.mktemp("cuda") / "repo")
    config_path = repo.root / "pants.toml"
    config = toml.loads(config_path.read_text())
    config.setdefault("ai-agents", {})["cuda_bases"] = {"12.4/runtime": reference}
    config_path.write_text(toml.dumps(config))
    repo.write(
        {
            "base/BUILD": (
                'debian_base(name="bookworm-python")\n'
                f'oci_base(name="cuda", image="{reference}")\n'
            ),
            "agents/BUILD": AGENTS_DEFAULTS,
            # The CUDA runtime as a wheel (the agents lock pins it): the "pip ships CUDA" route.
            "3rdparty/BUILD": (
                'python_requirement(name="cudart", requirements=["nvidia-cuda-runtime-cu12"],'
                ' resolve="agents")\n'
            ),
        }
    )
    return repo


def _debian_blobs(archive: Path, destination: Path) -> None:
    """Copy the blobs of an image archive's OCI layout out to `destination/<hex>`."""
    destination.mkdir(parents=True)
    with tarfile.open(archive) as layout:
        for member in layout:
            if member.isfile() and member.name.startswith("blobs/sha256/"):
                source = layout.extractfile(member)
                assert source is not None
                with open(destination / member.name.rsplit("/", 1)[1], "wb") as copy:
                    shutil.copyfileobj(source, copy)


@pytest.fixture(scope="module")
def cuda_base(
    scratch: ScratchRepo, reference: str, tmp_path_factory: pytest.TempPathFactory
) -> CudaBase:
    """`nvidia/cuda:12.4.1-runtime-ubuntu22.04`'s shape on the repo's Debian base, pushed to the
    local registry under that name."""
    succeeded(scratch.run("package", "base:bookworm-python"))
    debian_archive = scratch.root / DEBIAN_ARCHIVE
    [debian] = json.loads(Path(f"{debian_archive}.json").read_text())["images"]
    workdir = tmp_path_factory.mktemp("cuda-base")
    _debian_blobs(debian_archive, workdir / "blobs")

    layer_spec = {
        "compression": "gzip",
        "created_by": "the CUDA 12.4 runtime's layout (stand-in)",
        "entries": [
            {"path": LIBCUDART, "content": LIBCUDART_CONTENT},
            {"path": "usr/local/cuda-12.4/lib64", "symlink": "targets/x86_64-linux/lib"},
            {"path": "usr/local/cuda", "symlink": "cuda-12.4"},
            {
                "path": "etc/ld.so.conf.d/000_cuda.conf",
                "content": "/usr/local/cuda/targets/x86_64-linux/lib\n",
            },
            {"path": "usr/local/bin/python3.11", "symlink": "/usr/bin/python3.11"},
        ],
    }
    (workdir / "layer.json").write_text(json.dumps(layer_spec))
    _oci("layer", "--spec", str(workdir / "layer.json"), "--output-dir", str(workdir / "cuda"))

    image_spec = {
        "tags": [reference],
        "images": [
            {
                "base": {
                    "config": f"blobs/{debian['config']['digest'].split(':')[1]}",
                    "layers": [
                        {
                            "mediaType": layer["mediaType"],
                            "digest": layer["digest"],
                            "size": layer["size"],
                            "path": f"blobs/{layer['digest'].split(':')[1]}",
                        }
                        for layer in debian["layers"]
                    ],
                },
                "layers": ["cuda/descriptor.json"],
                "config": {"Env": CUDA_ENV, "Labels": CUDA_LABELS},
            }
        ],
    }
    (workdir / "image.json").write_text(json.dumps(image_spec))
    archive = workdir / "cuda.tar"
    _oci("image", "--spec", str(workdir / "image.json"), "--output", str(archive))
    metadata = json.loads(Path(f"{archive}.json").read_text())
    [image] = metadata["images"]
    assert image["layers"][: len(debian["layers"])] == debian["layers"]
    assert len(image["layers"]) == len(debian["layers"]) + 1

    pushed = _oci("push", "--spec", str(workdir / "image.json"), "--ref", reference)
    repository = reference.rsplit(":", 1)[0]
    assert f"pushed {repository}@{metadata['digest']}" in pushed
    return CudaBase(reference, metadata["digest"], image["layers"])


def test_cuda_agent_without_base_builds_on_the_overridden_table_entry(
    scratch: ScratchRepo,
    cuda_base: CudaBase,
    docker_client: Any,
    loaded_images: List[str],
) -> None:
    reference = cuda_base.reference
    succeeded(scratch.run("generate-lockfiles", "--resolve=cuda"))
    lock_text = (scratch.root / CUDA_LOCK).read_text()
    lock = json.loads(lock_text)
    assert lock["image"] == reference
    assert lock["resolved"]["digest"] == cuda_base.manifest_digest
    assert [
        layer["digest"] for layer in lock["platforms"]["linux/amd64"]["layers"]
    ] == cuda_base.layer_digests

    scratch.write(_agent_files("gpu", 'name="gpu", accelerator="cuda12.4"'))
    result = scratch.run("package", "agents/gpu:gpu")
    succeeded(result)

    metadata = json.loads((scratch.root / f"{GPU_ARCHIVE}.json").read_text())
    assert metadata["accelerator"] == "cuda12.4"
    assert metadata["tags"] == ["latest-cuda12.4"]
    assert {
        "path": CUDA_LOCK,
        "sha256": hashlib.sha256(lock_text.encode()).hexdigest(),
    } in metadata["locks"]
    [image] = metadata["images"]
    # Built on the `oci_base` that pins the table's (overridden) entry: the stand-in's layers,
    # carried as they were pushed, under the agent's own.
    assert image["base"]["target"] == "base:cuda"
    assert [layer["digest"] for layer in image["base"]["layers"]] == cuda_base.layer_digests
    base_layers = image["layers"][: len(cuda_base.layers)]
    assert [layer["kind"] for layer in base_layers] == ["base"] * len(cuda_base.layers)
    assert [layer["digest"] for layer in base_layers] == cuda_base.layer_digests
    assert [layer["kind"] for layer in image["layers"][len(cuda_base.layers) :]] == [
        "code",
        "config",
    ]

    loaded_images.append(GPU_TAG)
    with open(scratch.root / GPU_ARCHIVE, "rb") as archive:
        docker_client.images.load(archive)
    inspected = docker_client.api.inspect_image(GPU_TAG)
    assert inspected["Id"] == metadata["docker"]["imageID"]
    assert inspected["RootFS"]["Layers"][: len(cuda_base.layers)] == cuda_base.diff_ids
    config = inspected["Config"]
    env = config["Env"]
    # The plugin's NVIDIA_REQUIRE_CUDA replaces the base's; the rest of the base's Env stays.
    assert [item for item in env if item.startswith("NVIDIA_REQUIRE_CUDA=")] == [
        "NVIDIA_REQUIRE_CUDA=cuda>=12.4"
    ]
    for expected in (
        "NVIDIA_VISIBLE_DEVICES=all",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
        "CUDA_VERSION=12.4.1",
        "LD_LIBRARY_PATH=/usr/local/nvidia/lib:/usr/local/nvidia/lib64",
        "PYTHON_VERSION=3.11.2",
        f"PATH=/opt/agent/bin:{CUDA_PATH}",
    ):
        assert expected in env, env
    labels = config["Labels"]
    assert labels["ai-agent.cuda.version"] == "12.4"
    assert labels["ai-agent.cuda.flavour"] == "runtime"
    assert labels["ai-agent.cuda.base"] == reference
    assert labels["ai-agent.accelerator"] == "cuda12.4"
    assert labels["ai-agent.base"] == "base:cuda"
    assert labels["maintainer"] == CUDA_LABELS["maintainer"]
    # The base's Python, from its PYTHON_VERSION, at /usr/local/bin (the stand-in's symlink).
    assert config["Entrypoint"] == ["/usr/local/bin/python3.11", "-m", "app"]

    # No GPU here: plain `docker run`, which is enough for what the image itself holds.
    output = docker_client.containers.run(GPU_TAG, remove=True)
    assert json.loads(output) == {
        "python": [3, 11],
        "executable": "/usr/local/bin/python3.11",
        "uid": 65532,
        "NVIDIA_REQUIRE_CUDA": "cuda>=12.4",
        "CUDA_VERSION": "12.4.1",
        "libcudart": LIBCUDART_CONTENT,
    }


def test_cuda_agent_whose_wheels_carry_cuda_builds_on_the_default_python_base(
    scratch: ScratchRepo, docker_client: Any, loaded_images: List[str]
) -> None:
    """No `base`, no `oci_base` for the table's image: the lock ships CUDA (the nvidia-cuda-
    runtime wheel), so the agent builds on `[ai-agents].default_base` with the NVIDIA settings,
    and the wheel's libcudart is found by the dynamic loader."""
    scratch.write(
        _agent_files(
            "wheelcuda",
            'name="wheelcuda", accelerator="cuda", dependencies=[":src", "//3rdparty:cudart"]',
        )
    )
    try:
        result = scratch.run(
            "--ai-agents-default-base=//base:bookworm-python", "package", "agents/wheelcuda:"
        )
        succeeded(result)
        archive = scratch.root / "dist/agents.wheelcuda/wheelcuda.tar"
        metadata = json.loads(Path(f"{archive}.json").read_text())
        [image] = metadata["images"]
        assert image["base"]["target"] == "base:bookworm-python"
        loaded_images.append("wheelcuda:latest-cuda")
        with open(archive, "rb") as stream:
            docker_client.images.load(stream)
    finally:
        shutil.rmtree(scratch.root / "agents" / "wheelcuda")
    config = docker_client.api.inspect_image("wheelcuda:latest-cuda")["Config"]
    site = "/opt/agent/lib/python3.11/site-packages"
    for expected in (
        "NVIDIA_VISIBLE_DEVICES=all",
        "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
        "NVIDIA_REQUIRE_CUDA=cuda>=12.4",
        f"LD_LIBRARY_PATH={site}/nvidia/cuda_runtime/lib:/usr/local/nvidia/lib"
        ":/usr/local/nvidia/lib64",
    ):
        assert expected in config["Env"], config["Env"]
    labels = config["Labels"]
    assert (labels["ai-agent.cuda.version"], labels["ai-agent.cuda.flavour"]) == ("12.4", "base")
    assert "ai-agent.cuda.base" not in labels and labels["ai-agent.base"] == "base:bookworm-python"
    # Native code linking CUDA by name finds the wheel's library (no GPU is needed to load it).
    load = "import ctypes; print(ctypes.CDLL('libcudart.so.12')._name)"
    output = docker_client.containers.run(
        "wheelcuda:latest-cuda",
        entrypoint=["/usr/bin/python3.11", "-c", load],
        read_only=True,
        remove=True,
    )
    assert output == b"libcudart.so.12\n"
