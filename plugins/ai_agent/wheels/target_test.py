from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import pytest
from packaging.markers import Marker, default_environment
from packaging.utils import InvalidWheelFilename

from .conftest import TESTDATA
from .target import Target, TargetError, best_wheel

CUDA_TESTDATA = Path(__file__).parent.parent / "cuda" / "testdata"
AMD64_311 = Target.parse("3.11", "linux/amd64", "2.36")
ARM64_311 = Target.parse("3.11", "linux/arm64", "2.36")

# Real file names from PyPI (torch 2.3.1, pydantic-core 2.14.6).
TORCH = [
    "torch-2.3.1-cp311-cp311-manylinux1_x86_64.whl",
    "torch-2.3.1-cp311-cp311-manylinux2014_aarch64.whl",
    "torch-2.3.1-cp311-cp311-win_amd64.whl",
    "torch-2.3.1-cp311-none-macosx_11_0_arm64.whl",
    "torch-2.3.1-cp312-cp312-manylinux1_x86_64.whl",
]
PYDANTIC_CORE = [
    "pydantic_core-2.14.6-cp311-cp311-macosx_10_7_x86_64.whl",
    "pydantic_core-2.14.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl",
    "pydantic_core-2.14.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "pydantic_core-2.14.6-cp311-cp311-musllinux_1_1_x86_64.whl",
    "pydantic_core-2.14.6-cp311-none-win_amd64.whl",
    "pydantic_core-2.14.6-pp310-pypy310_pp73-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "pydantic_core-2.14.6.tar.gz",
]


def _artifact_filenames(lock: Path) -> Dict[str, List[str]]:
    """Each project's artifact file names in a lock fixture."""
    text = lock.read_text(encoding="utf-8")
    document = json.loads("".join(line for line in text.splitlines(True) if line[:2] != "//"))
    return {
        requirement["project_name"]: [
            artifact["url"].rsplit("/", 1)[1] for artifact in requirement["artifacts"]
        ]
        for requirement in document["locked_resolves"][0]["locked_requirements"]
    }


def _best(filenames: List[str], target: Target) -> str:
    wheel = best_wheel(filenames, target)
    assert wheel is not None
    return wheel


def test_the_tag_order_is_pips() -> None:
    """Spot checks of `packaging.tags.sys_tags` for CPython 3.11 on glibc 2.36 x86_64."""
    tags = [str(tag) for tag in AMD64_311.supported_tags()]
    assert tags[:3] == [
        "cp311-cp311-manylinux_2_36_x86_64",
        "cp311-cp311-manylinux_2_35_x86_64",
        "cp311-cp311-manylinux_2_34_x86_64",
    ]
    order = [
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux2014_x86_64",
        "cp311-cp311-manylinux1_x86_64",
        "cp311-cp311-linux_x86_64",
        "cp311-abi3-manylinux_2_36_x86_64",
        "cp311-none-manylinux_2_36_x86_64",
        "cp310-abi3-manylinux_2_36_x86_64",
        "cp32-abi3-linux_x86_64",
        "py311-none-manylinux_2_36_x86_64",
        "py3-none-manylinux_2_36_x86_64",
        "py30-none-linux_x86_64",
        "cp311-none-any",
        "py311-none-any",
        "py3-none-any",
        "py30-none-any",
    ]
    assert [tags.index(tag) for tag in order] == sorted(tags.index(tag) for tag in order)
    assert tags[-1] == "py30-none-any" and len(tags) == len(set(tags)) == 914
    assert "cp311-cp311-manylinux_2_37_x86_64" not in tags
    assert not any("aarch64" in tag or "musllinux" in tag for tag in tags)


def test_the_platforms_of_a_target_glibc() -> None:
    """manylinux_2_N down to the architecture's oldest, legacy aliases after theirs, then linux."""
    platforms = {tag.platform: None for tag in ARM64_311.supported_tags() if tag.abi == "cp311"}
    assert list(platforms) == [f"manylinux_2_{minor}_aarch64" for minor in range(36, 17, -1)] + [
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
        "linux_aarch64",
    ]
    old_x86 = Target.parse("3.11", "linux/amd64", "2.12").supported_tags()
    platforms = {tag.platform: None for tag in old_x86 if tag.abi == "cp311"}
    assert list(platforms) == [
        "manylinux_2_12_x86_64",
        "manylinux2010_x86_64",
        *[f"manylinux_2_{minor}_x86_64" for minor in range(11, 5, -1)],
        "manylinux_2_5_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ]


def test_the_marker_environment_is_the_targets_not_the_hosts() -> None:
    environment = Target.parse("3.9", "linux/arm64", "2.36").marker_environment()
    # Every variable is set, so `Marker.evaluate` never falls back to the host's value.
    assert set(default_environment()) <= set(environment)
    assert environment["platform_machine"] == "aarch64"
    assert environment["python_full_version"] == "3.9.0"
    assert Marker('platform_machine == "aarch64" and python_version < "3.10"').evaluate(environment)
    assert not Marker('platform_machine == "x86_64"').evaluate(environment)
    amd64 = Target.parse("3.11.2", "linux/amd64", "2.36").marker_environment()
    assert Marker('python_full_version >= "3.11.1" and sys_platform == "linux"').evaluate(amd64)
    assert not Marker('python_version < "3.11" or os_name == "nt"').evaluate(amd64)


def test_numpy_from_the_agents_lock() -> None:
    filenames = _artifact_filenames(TESTDATA / "agents.lock")["numpy"]
    assert _best(filenames, AMD64_311) == (
        "numpy-2.2.6-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    )
    assert _best(filenames, ARM64_311) == (
        "numpy-2.2.6-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    )
    assert best_wheel(filenames, Target.parse("3.12", "linux/amd64", "2.36")) is None
    assert best_wheel(filenames, Target.parse("3.11", "linux/amd64", "2.16")) is None


def test_pants_plugins_lock_picks_the_right_builds_for_cpython_39() -> None:
    target = Target.parse("3.9", "linux/amd64", "2.36")
    lock = _artifact_filenames(TESTDATA / "pants-plugins.lock")
    charset = lock["charset-normalizer"]
    assert _best(charset, target) == (
        "charset_normalizer-3.5.3-cp39-cp39-manylinux1_x86_64.manylinux_2_28_x86_64"
        ".manylinux_2_5_x86_64.whl"
    )
    # manylinux_2_28 needs glibc 2.28; the old one still installs on an older base.
    assert "manylinux_2_28" in _best(lock["pyyaml"], target)
    assert "ujson" in _best(lock["ujson"], target)
    assert best_wheel(lock["ujson"], Target.parse("3.9", "linux/amd64", "2.17")) is None
    assert _best(lock["six"], target) == "six-1.17.0-py2.py3-none-any.whl"


def test_a_manylinux_2_28_wheel_needs_glibc_2_28() -> None:
    """torch 2.7.1 publishes manylinux_2_28 wheels only."""
    filenames = _artifact_filenames(CUDA_TESTDATA / "torch-2.7.1-pypi.lock")["torch"]
    x86_64 = "torch-2.7.1-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert _best(filenames, AMD64_311) == x86_64
    assert _best(filenames, ARM64_311) == "torch-2.7.1-cp311-cp311-manylinux_2_28_aarch64.whl"
    assert _best(filenames, Target.parse("3.11", "linux/amd64", "2.28")) == x86_64
    assert best_wheel(filenames, Target.parse("3.11", "linux/amd64", "2.27")) is None
    assert best_wheel(filenames, Target.parse("3.11", "linux/amd64", "2.17")) is None
    assert best_wheel(filenames, Target.parse("3.11", "linux/arm64", "2.17")) is None


@pytest.mark.parametrize("lock", sorted(TESTDATA.glob("*.lock")), ids=lambda path: path.name)
def test_musllinux_wheels_are_never_chosen_for_glibc(lock: Path) -> None:
    targets = [
        Target.parse(python, platform, glibc)
        for python in ("3.9", "3.11")
        for platform in ("linux/amd64", "linux/arm64")
        for glibc in ("2.17", "2.36")
    ]
    for filenames in _artifact_filenames(lock).values():
        musl = [filename for filename in filenames if "musllinux" in filename]
        for target in targets:
            assert "musllinux" not in (best_wheel(filenames, target) or "")
            assert best_wheel(musl, target) is None


def test_torch_and_pydantic_core_like_artifact_lists() -> None:
    assert _best(TORCH, AMD64_311) == "torch-2.3.1-cp311-cp311-manylinux1_x86_64.whl"
    assert _best(TORCH, ARM64_311) == "torch-2.3.1-cp311-cp311-manylinux2014_aarch64.whl"
    assert _best(PYDANTIC_CORE, AMD64_311) == PYDANTIC_CORE[2]
    assert _best(PYDANTIC_CORE, ARM64_311) == PYDANTIC_CORE[1]


def test_specific_wheels_beat_abi3_and_pure_ones() -> None:
    candidates = [
        "cryptography-42.0.5-py3-none-any.whl",
        "cryptography-42.0.5-cp39-abi3-manylinux_2_28_x86_64.whl",
        "cryptography-42.0.5-cp37-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    ]
    assert _best(candidates, AMD64_311) == candidates[1]
    assert _best(candidates + ["cryptography-42.0.5-cp311-cp311-linux_x86_64.whl"], AMD64_311) == (
        "cryptography-42.0.5-cp311-cp311-linux_x86_64.whl"
    )
    assert _best(candidates, Target.parse("3.11", "linux/amd64", "2.27")) == candidates[2]


def test_wheel_file_names_with_build_tags_and_tag_sets() -> None:
    assert _best(["foo-1.0-1build-py2.py3-none-any.whl"], AMD64_311) == (
        "foo-1.0-1build-py2.py3-none-any.whl"
    )
    with pytest.raises(InvalidWheelFilename):
        best_wheel(["foo-1.0-py3-any.whl"], AMD64_311)


@pytest.mark.parametrize(
    ("python", "platform", "glibc"),
    [
        ("3.7", "linux/amd64", "2.36"),
        ("3.11", "linux/riscv64", "2.36"),
        ("3.11", "darwin/arm64", "2.36"),
        ("3.11", "linux/amd64", "2"),
    ],
)
def test_bad_targets_are_refused(python: str, platform: str, glibc: str) -> None:
    with pytest.raises(TargetError):
        Target.parse(python, platform, glibc)
