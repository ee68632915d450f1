from __future__ import annotations

import copy

import pytest

from .table import (
    DEFAULT_TABLE,
    FLAVOURS,
    CudaProblem,
    CudaVersion,
    UnknownCudaVersion,
    base_reference,
    cudnn_major_of_base,
    known_versions,
    merge_table,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("12.4", CudaVersion(12, 4)),
        ("cuda12.4", CudaVersion(12, 4)),
        ("CUDA12.4", CudaVersion(12, 4)),
        ("cu124", CudaVersion(12, 4)),
        ("12.4.1", CudaVersion(12, 4)),
        ("cuda12.4.1", CudaVersion(12, 4)),
        (" 11.8 ", CudaVersion(11, 8)),
        ("cu118", CudaVersion(11, 8)),
        ("cu130", CudaVersion(13, 0)),
    ],
)
def test_cuda_versions_parse_in_every_spelling(text: str, expected: CudaVersion) -> None:
    assert CudaVersion.parse(text) == expected


@pytest.mark.parametrize("text", ["12", "cu12", "cuda", "rocm6.2", "12.x", "", "cu1240"])
def test_malformed_cuda_versions_are_refused(text: str) -> None:
    with pytest.raises(CudaProblem, match="is not a CUDA version: expected X.Y such as 12.4"):
        CudaVersion.parse(text)


def test_cuda_versions_print_order_and_name_their_torch_variant() -> None:
    assert str(CudaVersion(12, 4)) == "12.4"
    assert CudaVersion(12, 4).tag == "cu124"
    assert CudaVersion(11, 8) < CudaVersion(12, 1) < CudaVersion(12, 10) < CudaVersion(13, 0)
    assert issubclass(UnknownCudaVersion, CudaProblem)
    assert issubclass(CudaProblem, ValueError)


def test_the_default_table_names_nvidia_cuda_tags() -> None:
    assert DEFAULT_TABLE["12.4"] == {
        "base": "nvidia/cuda:12.4.1-base-ubuntu22.04",
        "runtime": "nvidia/cuda:12.4.1-runtime-ubuntu22.04",
        "cudnn-runtime": "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04",
        "devel": "nvidia/cuda:12.4.1-devel-ubuntu22.04",
    }
    assert known_versions(DEFAULT_TABLE) == ["11.8", "12.1", "12.4", "12.6", "12.8", "12.9", "13.0"]
    assert DEFAULT_TABLE["11.8"]["cudnn-runtime"] == "nvidia/cuda:11.8.0-cudnn8-runtime-ubuntu22.04"
    assert DEFAULT_TABLE["12.1"]["cudnn-runtime"] == "nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04"
    assert DEFAULT_TABLE["12.6"]["cudnn-runtime"] == "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
    assert DEFAULT_TABLE["12.8"]["runtime"] == "nvidia/cuda:12.8.1-runtime-ubuntu24.04"
    assert DEFAULT_TABLE["12.9"]["base"] == "nvidia/cuda:12.9.1-base-ubuntu24.04"
    assert DEFAULT_TABLE["13.0"]["devel"] == "nvidia/cuda:13.0.1-devel-ubuntu24.04"


def test_every_default_entry_follows_the_tag_rules() -> None:
    for key, flavours in DEFAULT_TABLE.items():
        version = CudaVersion.parse(key)
        assert tuple(flavours) == FLAVOURS
        cudnn = "cudnn8" if version <= CudaVersion(12, 2) else "cudnn"
        assert cudnn_major_of_base(version) == (8 if cudnn == "cudnn8" else 9)
        os_version = "ubuntu24.04" if version >= CudaVersion(12, 6) else "ubuntu22.04"
        for flavour, reference in flavours.items():
            name, _, tag = reference.partition(":")
            assert name == "nvidia/cuda"
            release, _, rest = tag.partition("-")
            assert CudaVersion.parse(release) == version
            expected = f"{cudnn}-runtime" if flavour == "cudnn-runtime" else flavour
            assert rest == f"{expected}-{os_version}", reference


def test_overrides_replace_and_add_entries_without_touching_the_default() -> None:
    before = copy.deepcopy(DEFAULT_TABLE)
    mirror = "registry.example:5000/mirror/nvidia/cuda:12.4.1-base-ubuntu22.04@sha256:" + "a" * 64
    merged = merge_table(
        DEFAULT_TABLE,
        {
            "12.4/base": mirror,
            "cuda12.5/runtime": "registry.example/nvidia/cuda:12.5.1-runtime-ubuntu22.04",
        },
    )
    assert DEFAULT_TABLE == before
    assert merged["12.4"]["base"] == mirror
    assert merged["12.4"]["runtime"] == "nvidia/cuda:12.4.1-runtime-ubuntu22.04"
    assert merged["12.5"] == {"runtime": "registry.example/nvidia/cuda:12.5.1-runtime-ubuntu22.04"}
    assert list(merged) == ["11.8", "12.1", "12.4", "12.5", "12.6", "12.8", "12.9", "13.0"]
    assert base_reference(merged, CudaVersion(12, 5), "runtime").endswith(
        "12.5.1-runtime-ubuntu22.04"
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"12.4-runtime": "mirror/cuda:1"}, r"key '12.4-runtime' is not \"X.Y/FLAVOUR\""),
        ({"12.4/": "mirror/cuda:1"}, r"key '12.4/' is not \"X.Y/FLAVOUR\""),
        ({"12.4/slim": "mirror/cuda:1"}, r"key '12.4/slim': 'slim' is not a flavour; use one of"),
        ({"twelve/base": "mirror/cuda:1"}, r"key 'twelve/base': 'twelve' is not a CUDA version"),
        (
            {"12.4/base": "mirror/cuda:1", "cuda12.4/base": "mirror/cuda:2"},
            r"key 'cuda12.4/base' and key '12.4/base' both set 12.4/base: keep one",
        ),
        ({"12.4/base": "Not A Reference"}, r"key '12.4/base': 'Not A Reference' is not an image"),
        (
            {"12.4/base": "mirror/nvidia/cuda"},
            r"key '12.4/base': .* has neither a tag nor a digest",
        ),
    ],
)
def test_bad_overrides_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(CudaProblem, match=r"\[ai-agents\].cuda_bases: " + message):
        merge_table(DEFAULT_TABLE, overrides)


def test_an_unknown_version_lists_the_known_ones_and_how_to_add_it() -> None:
    with pytest.raises(UnknownCudaVersion) as raised:
        base_reference(DEFAULT_TABLE, CudaVersion(12, 5), "runtime", "from accelerator='cuda12.5'")
    message = str(raised.value)
    assert "CUDA 12.5 (from accelerator='cuda12.5') has no base image in the CUDA table" in message
    assert "(known: 11.8, 12.1, 12.4, 12.6, 12.8, 12.9, 13.0)" in message
    assert "set accelerator='cuda12.6' and lock wheels built for CUDA 12.6" in message
    assert '[ai-agents].cuda_bases = {"12.5/runtime": "registry.example/nvidia/cuda:' in message
    assert raised.value.version == CudaVersion(12, 5)


def test_a_missing_flavour_of_an_added_version_says_how_to_add_it() -> None:
    merged = merge_table(DEFAULT_TABLE, {"12.5/runtime": "mirror/cuda:12.5.1-runtime"})
    with pytest.raises(CudaProblem, match=r"no 'base' image for CUDA 12.5 \(it has runtime\)"):
        base_reference(merged, CudaVersion(12, 5), "base")
