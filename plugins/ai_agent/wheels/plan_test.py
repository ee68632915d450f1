from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Dict, List, Union

import pytest

from .install import InstallLayout
from .plan import BIG, SMALL, DistributionConflict, LockedWheel, PlannedLayer, plan_layers

LAYOUT = InstallLayout("opt/agent", "/usr/bin/python3.11", "3.11")
SITE = LAYOUT.site_packages


def _wheel(
    root: Path, project: str, version: str, files: Dict[str, Union[int, bytes]]
) -> LockedWheel:
    """A wheel written under `root`: a member given as a size holds that many bytes naming the
    project, one given as bytes holds them."""
    path = root / f"{project.replace('-', '_')}-{version}-py3-none-any.whl"
    root.mkdir(parents=True, exist_ok=True)
    dist_info = f"{project.replace('-', '_')}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as archive:
        for name, size_or_content in sorted(files.items()):
            content = (
                f"{project} {version}\n".encode().ljust(size_or_content, b".")
                if isinstance(size_or_content, int)
                else size_or_content
            )
            archive.writestr(name, content)
        archive.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\n")
        archive.writestr(f"{dist_info}/RECORD", "")
    return LockedWheel(str(path), hashlib.sha256(path.read_bytes()).hexdigest())


def _layers(layers: List[PlannedLayer]) -> Dict[str, List[str]]:
    return {layer.name: [wheel.project for wheel in layer.wheels] for layer in layers}


def test_big_wheels_get_layers_of_their_own_in_name_order(tmp_path: Path) -> None:
    torch = _wheel(tmp_path, "torch", "2.3.1", {"torch/lib.so": 3000})
    cudnn = _wheel(tmp_path, "nvidia-cudnn-cu12", "8.9.2", {"nvidia/cudnn/lib.so": 2000})
    six = _wheel(tmp_path, "six", "1.16.0", {"six.py": 100})
    idna = _wheel(tmp_path, "idna", "3.6", {"idna/__init__.py": 100})
    layers = plan_layers([six, torch, idna, cudnn], LAYOUT, threshold=1000)
    assert [(layer.name, layer.kind) for layer in layers] == [
        ("site-packages-nvidia-cudnn-cu12", BIG),
        ("site-packages-torch", BIG),
        ("site-packages", SMALL),
    ]
    assert _layers(layers)["site-packages"] == ["idna", "six"]
    # The shared layer is there without small wheels: it holds the virtual environment.
    assert _layers(plan_layers([torch], LAYOUT, threshold=1000)) == {
        "site-packages-torch": ["torch"],
        "site-packages": [],
    }


def test_a_big_wheel_is_planned_alike_whatever_else_is_locked(tmp_path: Path) -> None:
    torch = _wheel(tmp_path / "a", "torch", "2.3.1", {"torch/lib.so": 3000})
    six = _wheel(tmp_path / "a", "six", "1.16.0", {"six.py": 100})
    six_bumped = _wheel(tmp_path / "b", "six", "1.17.0", {"six.py": 120})
    idna_added = _wheel(tmp_path / "b", "idna", "3.6", {"idna/__init__.py": 100})
    before = plan_layers([torch, six], LAYOUT, threshold=1000)
    after = plan_layers([six_bumped, idna_added, torch], LAYOUT, threshold=1000)
    assert before[0] == after[0]
    assert before[1] != after[1]


def test_a_file_several_wheels_install_alike_is_written_once_by_the_first_layer(
    tmp_path: Path,
) -> None:
    # The nvidia-* wheels all ship the namespace's empty `nvidia/__init__.py`.
    namespace = {"nvidia/__init__.py": b""}
    cublas = _wheel(
        tmp_path, "nvidia-cublas-cu12", "12.4.5.8", {**namespace, "nvidia/cublas.so": 3000}
    )
    cupti = _wheel(tmp_path, "nvidia-cuda-cupti-cu12", "12.4.127", {**namespace, "nvidia/cupti": 9})
    nvtx = _wheel(tmp_path, "nvidia-nvtx-cu12", "12.4.127", {**namespace, "nvidia/nvtx": 9})
    layers = plan_layers([nvtx, cupti, cublas], LAYOUT, threshold=1000)
    [big] = layers[0].wheels
    assert (big.project, big.skip, big.notes) == ("nvidia-cublas-cu12", (), ())
    note = (
        "1 file(s) with the same bytes as in nvidia-cublas-cu12 are installed once, by the"
        f" first layer: {SITE}/nvidia/__init__.py"
    )
    assert [(wheel.skip, wheel.notes) for wheel in layers[1].wheels] == [
        ((f"{SITE}/nvidia/__init__.py",), (note,))
    ] * 2
    # Without the big one, the first small wheel by name keeps it; the next one skips it.
    [alone] = plan_layers([nvtx, cupti], LAYOUT, threshold=1000)[-1:]
    assert [wheel.skip for wheel in alone.wheels] == [(), (f"{SITE}/nvidia/__init__.py",)]


def test_one_path_with_different_contents_or_a_file_under_a_file_is_refused(
    tmp_path: Path,
) -> None:
    first = _wheel(tmp_path, "typing", "3.7", {"typing.py": 10})
    second = _wheel(tmp_path, "typing-extensions", "4.3.0", {"typing.py": 11})
    with pytest.raises(
        DistributionConflict,
        match=(
            "typing.py is installed by both typing-3.7-py3-none-any.whl and"
            " typing_extensions-4.3.0-py3-none-any.whl with different contents"
        ),
    ):
        plan_layers([first, second], LAYOUT)
    file_owner = _wheel(tmp_path, "a", "1", {"pkg": 10})
    directory_owner = _wheel(tmp_path, "b", "1", {"pkg/mod.py": 10})
    with pytest.raises(DistributionConflict, match="pkg is a file of a but a directory of b"):
        plan_layers([file_owner, directory_owner], LAYOUT)


def test_wheel_arguments_are_path_and_sha256() -> None:
    wheel = LockedWheel.parse(f"wheels/six-1.16.0-py2.py3-none-any.whl={'AB' * 32}")
    assert (wheel.path, wheel.sha256) == (Path("wheels/six-1.16.0-py2.py3-none-any.whl"), "ab" * 32)
    served = LockedWheel.parse(
        f"https://index.example/a/six-1.16.0-py3-none-any.whl?t=x={'0' * 64}"
    )
    assert (served.filename, served.sha256) == ("six-1.16.0-py3-none-any.whl", "0" * 64)
    with pytest.raises(ValueError, match="--wheel takes PATH=SHA256"):
        LockedWheel.parse("wheels/six-1.16.0-py2.py3-none-any.whl")
