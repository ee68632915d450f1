from __future__ import annotations

import json
from typing import List

import pytest

from .conftest import TESTDATA
from .tags import Target, TargetError, WheelFilename, WheelFilenameError, best_wheel

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


def _artifact_filenames(lock: str, project: str) -> List[str]:
    text = (TESTDATA / lock).read_text()
    document = json.loads("".join(line for line in text.splitlines(True) if line[:2] != "//"))
    for requirement in document["locked_resolves"][0]["locked_requirements"]:
        if requirement["project_name"] == project:
            return [artifact["url"].rsplit("/", 1)[1] for artifact in requirement["artifacts"]]
    raise AssertionError(f"{project} is not in {lock}")


def _best(filenames: List[str], target: Target) -> str:
    wheel = best_wheel(filenames, target)
    assert wheel is not None
    return wheel.filename


def test_the_tag_order_is_pips() -> None:
    """Spot checks of `packaging.tags.sys_tags` for CPython 3.11 on glibc 2.36 x86_64."""
    tags = AMD64_311.supported_tags()
    assert tags[:3] == [
        ("cp311", "cp311", "manylinux_2_36_x86_64"),
        ("cp311", "cp311", "manylinux_2_35_x86_64"),
        ("cp311", "cp311", "manylinux_2_34_x86_64"),
    ]
    order = [
        ("cp311", "cp311", "manylinux_2_17_x86_64"),
        ("cp311", "cp311", "manylinux2014_x86_64"),
        ("cp311", "cp311", "manylinux1_x86_64"),
        ("cp311", "cp311", "linux_x86_64"),
        ("cp311", "abi3", "manylinux_2_36_x86_64"),
        ("cp311", "none", "manylinux_2_36_x86_64"),
        ("cp310", "abi3", "manylinux_2_36_x86_64"),
        ("cp32", "abi3", "linux_x86_64"),
        ("py311", "none", "manylinux_2_36_x86_64"),
        ("py3", "none", "manylinux_2_36_x86_64"),
        ("py30", "none", "linux_x86_64"),
        ("cp311", "none", "any"),
        ("py311", "none", "any"),
        ("py3", "none", "any"),
        ("py30", "none", "any"),
    ]
    assert [tags.index(tag) for tag in order] == sorted(tags.index(tag) for tag in order)
    assert tags[-1] == ("py30", "none", "any") and len(tags) == len(set(tags)) == 914
    assert ("cp311", "cp311", "manylinux_2_37_x86_64") not in tags
    assert not any("aarch64" in tag[2] or "musllinux" in tag[2] for tag in tags)


def test_numpy_from_the_agents_lock() -> None:
    filenames = _artifact_filenames("agents.lock", "numpy")
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
    charset = _artifact_filenames("pants-plugins.lock", "charset-normalizer")
    assert _best(charset, target) == (
        "charset_normalizer-3.5.3-cp39-cp39-manylinux1_x86_64.manylinux_2_28_x86_64"
        ".manylinux_2_5_x86_64.whl"
    )
    # manylinux_2_28 needs glibc 2.28; the old one still installs on an older base.
    pyyaml = _artifact_filenames("pants-plugins.lock", "pyyaml")
    assert "manylinux_2_28" in _best(pyyaml, target)
    assert "ujson" in _best(_artifact_filenames("pants-plugins.lock", "ujson"), target)
    ujson_old_glibc = best_wheel(
        _artifact_filenames("pants-plugins.lock", "ujson"),
        Target.parse("3.9", "linux/amd64", "2.17"),
    )
    assert ujson_old_glibc is None
    assert _best(_artifact_filenames("pants-plugins.lock", "six"), target) == (
        "six-1.17.0-py2.py3-none-any.whl"
    )


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


def test_wheel_file_names() -> None:
    wheel = WheelFilename.parse("pantsbuild.pants-2.17.1-cp39-cp39-manylinux2014_x86_64.whl")
    assert (wheel.name, wheel.version) == ("pantsbuild-pants", "2.17.1")
    with_build = WheelFilename.parse("foo-1.0-1build-py2.py3-none-any.whl")
    assert with_build.tags == {("py2", "none", "any"), ("py3", "none", "any")}
    with pytest.raises(WheelFilenameError):
        WheelFilename.parse("foo-1.0-py3-any.whl")


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
