from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

from ..oci.layer import LayerOptions, write_layer
from .install import InstalledDistribution, InstalledFile
from .plan import BIG, SMALL, DistributionConflict, PlannedLayer, plan_layers

SITE = "opt/agent/site-packages"


def _distribution(
    root: Path, project: str, version: str, files: Dict[str, int]
) -> InstalledDistribution:
    """A distribution whose files hold `size` bytes each, written under `root/project`."""
    installed: List[InstalledFile] = []
    for path, size in sorted(files.items()):
        host = root / project / path
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_bytes(f"{project} {version}\n".encode().ljust(size, b"."))
        installed.append(InstalledFile(path, 0o644, size))
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


def test_two_distributions_owning_one_path_are_refused(tmp_path: Path) -> None:
    first = _distribution(tmp_path, "typing", "3.7", {f"{SITE}/typing.py": 10})
    second = _distribution(tmp_path, "typing-extensions", "4.3.0", {f"{SITE}/typing.py": 10})
    with pytest.raises(DistributionConflict, match="typing.py is installed by both typing and"):
        plan_layers([first, second])
    file_owner = _distribution(tmp_path, "a", "1", {f"{SITE}/pkg": 10})
    directory_owner = _distribution(tmp_path, "b", "1", {f"{SITE}/pkg/mod.py": 10})
    with pytest.raises(DistributionConflict, match="pkg is a file of a but a directory of b"):
        plan_layers([file_owner, directory_owner])
