from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, List, Union

import pytest

from ..oci.layer import LayerOptions, write_layer
from .installed import InstalledDistribution, InstalledFile
from .plan import BIG, SMALL, DistributionConflict, PlannedLayer, plan_layers

SITE = "opt/agent/lib/python3.11/site-packages"


def _distribution(
    root: Path, project: str, version: str, files: Dict[str, Union[int, bytes]]
) -> InstalledDistribution:
    """A distribution written under `root/project`: a file given as a size holds that many
    bytes naming the project, one given as bytes holds them."""
    installed: List[InstalledFile] = []
    for path, size_or_content in sorted(files.items()):
        content = (
            f"{project} {version}\n".encode().ljust(size_or_content, b".")
            if isinstance(size_or_content, int)
            else size_or_content
        )
        host = root / project / path
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(content)
        sha256 = hashlib.sha256(content).hexdigest()
        installed.append(InstalledFile(path, 0o644, len(content), sha256))
    return InstalledDistribution(
        project, version, f"{project}-{version}-py3-none-any.whl", root / project, tuple(installed)
    )


def _digests(layers: List[PlannedLayer], tmp_path: Path) -> Dict[str, str]:
    return {
        layer.name: write_layer(
            layer.entries(), tmp_path / f"{layer.name}.tar", LayerOptions()
        ).diff_id
        for layer in layers
    }


def test_big_distributions_get_layers_of_their_own_in_name_order(tmp_path: Path) -> None:
    torch = _distribution(tmp_path, "torch", "2.3.1", {f"{SITE}/torch/lib.so": 3000})
    cudnn = _distribution(
        tmp_path, "nvidia-cudnn-cu12", "8.9.2", {f"{SITE}/nvidia/cudnn/lib.so": 2000}
    )
    six = _distribution(tmp_path, "six", "1.16.0", {f"{SITE}/six.py": 100})
    idna = _distribution(tmp_path, "idna", "3.6", {f"{SITE}/idna/__init__.py": 100})
    layers = plan_layers([six, torch, idna, cudnn], threshold=1000)
    assert [(layer.name, layer.kind) for layer in layers] == [
        ("site-packages-nvidia-cudnn-cu12", BIG),
        ("site-packages-torch", BIG),
        ("site-packages", SMALL),
    ]
    assert [dist.project for dist in layers[2].distributions] == ["idna", "six"]
    assert plan_layers([six], threshold=1000)[0].name == "site-packages"
    assert [layer.kind for layer in plan_layers([torch], threshold=1000)] == [BIG]


def test_bumping_a_small_requirement_keeps_the_big_layers(tmp_path: Path) -> None:
    torch = _distribution(tmp_path / "a", "torch", "2.3.1", {f"{SITE}/torch/lib.so": 3000})
    six = _distribution(tmp_path / "a", "six", "1.16.0", {f"{SITE}/six.py": 100})
    torch_again = _distribution(tmp_path / "b", "torch", "2.3.1", {f"{SITE}/torch/lib.so": 3000})
    six_bumped = _distribution(tmp_path / "b", "six", "1.17.0", {f"{SITE}/six.py": 120})
    idna_added = _distribution(tmp_path / "b", "idna", "3.6", {f"{SITE}/idna/__init__.py": 100})
    before = _digests(plan_layers([torch, six], threshold=1000), tmp_path / "a")
    after = _digests(
        plan_layers([six_bumped, idna_added, torch_again], threshold=1000), tmp_path / "b"
    )
    assert before["site-packages-torch"] == after["site-packages-torch"]
    assert before["site-packages"] != after["site-packages"]


def test_a_file_several_distributions_install_alike_is_written_once_by_the_first_layer(
    tmp_path: Path,
) -> None:
    # The nvidia-* wheels all ship the namespace's empty `nvidia/__init__.py`.
    namespace = {f"{SITE}/nvidia/__init__.py": b""}
    cublas = _distribution(
        tmp_path, "nvidia-cublas-cu12", "12.4.5.8", {**namespace, f"{SITE}/nvidia/cublas.so": 3000}
    )
    cupti = _distribution(
        tmp_path, "nvidia-cuda-cupti-cu12", "12.4.127", {**namespace, f"{SITE}/nvidia/cupti": 9}
    )
    nvtx = _distribution(
        tmp_path, "nvidia-nvtx-cu12", "12.4.127", {**namespace, f"{SITE}/nvidia/nvtx": 9}
    )
    layers = plan_layers([nvtx, cupti, cublas], threshold=1000)
    paths = {layer.name: [entry.path for entry in layer.entries()] for layer in layers}
    assert f"{SITE}/nvidia/__init__.py" in paths["site-packages-nvidia-cublas-cu12"]
    assert paths["site-packages"] == [f"{SITE}/nvidia/cupti", f"{SITE}/nvidia/nvtx"]
    [shared] = layers[1:]
    assert [dist.notes for dist in shared.distributions] == [
        (
            "1 file(s) with the same bytes as in nvidia-cublas-cu12 are installed once, by the"
            f" first layer: {SITE}/nvidia/__init__.py",
        ),
    ] * 2
    # Without the big one, the first small distribution by name keeps it.
    [alone] = plan_layers([nvtx, cupti], threshold=1000)
    assert [entry.path for entry in alone.entries()] == [
        f"{SITE}/nvidia/__init__.py",
        f"{SITE}/nvidia/cupti",
        f"{SITE}/nvidia/nvtx",
    ]


def test_one_path_with_different_contents_or_a_file_under_a_file_is_refused(
    tmp_path: Path,
) -> None:
    first = _distribution(tmp_path, "typing", "3.7", {f"{SITE}/typing.py": 10})
    second = _distribution(tmp_path, "typing-extensions", "4.3.0", {f"{SITE}/typing.py": 10})
    with pytest.raises(
        DistributionConflict,
        match=(
            "typing.py is installed by both typing-3.7-py3-none-any.whl and"
            " typing-extensions-4.3.0-py3-none-any.whl with different contents"
        ),
    ):
        plan_layers([first, second])
    file_owner = _distribution(tmp_path, "a", "1", {f"{SITE}/pkg": 10})
    directory_owner = _distribution(tmp_path, "b", "1", {f"{SITE}/pkg/mod.py": 10})
    with pytest.raises(DistributionConflict, match="pkg is a file of a but a directory of b"):
        plan_layers([file_owner, directory_owner])
