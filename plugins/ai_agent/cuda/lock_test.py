from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List

import pytest

from ..wheels.pexlock import ChosenWheel, PexLock
from ..wheels.target import Target
from .lock import CudaClaim, LockedCuda

TESTDATA = Path(__file__).parent / "testdata"
FIXTURES = [
    "torch-2.5.1-pypi",
    "torch-2.4.1-cu121",
    "torch-2.4.1-cpu",
    "mixed-cuda-majors",
    "onnxruntime-gpu",
    "torch-2.7.1-pypi",
    "torch-2.8.0-pypi",
    "cupy-cuda12x",
]


def _document(name: str) -> Dict[str, Any]:
    text = (TESTDATA / f"{name}.lock").read_text(encoding="utf-8")
    return json.loads("".join(line for line in text.splitlines(True) if not line.startswith("//")))


def wheels(name: str, platform: str = "linux/amd64") -> List[ChosenWheel]:
    """The wheels of the fixture's requirements for CPython 3.11 on `platform`, as `plan` picks."""
    target = Target.parse("3.11", platform, "2.36")
    lock = PexLock.load(TESTDATA / f"{name}.lock", target)
    return lock.resolve(_document(name)["requirements"], target)


def analyse(name: str, platform: str = "linux/amd64") -> LockedCuda:
    return LockedCuda.analyse(wheels(name, platform))


def _claim(locked: LockedCuda, project: str) -> CudaClaim:
    return next(claim for claim in locked.claims if claim.project == project)


# The fixtures themselves ------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_fixtures_pin_real_wheels_with_sha256s(name: str) -> None:
    """PyPI artifacts carry their real sha256; only download.pytorch.org ones (unreachable when
    the fixtures were written) carry the all-zero placeholder."""
    resolve = _document(name)["locked_resolves"][0]
    for project in resolve["locked_requirements"]:
        for artifact in project["artifacts"]:
            assert artifact["algorithm"] == "sha256"
            assert re.fullmatch(r"[0-9a-f]{64}", artifact["hash"])
            if artifact["url"].startswith("https://download.pytorch.org/whl/"):
                assert artifact["hash"] == "0" * 64
            else:
                assert artifact["url"].startswith("https://files.pythonhosted.org/packages/")
                assert artifact["hash"] != "0" * 64


# torch --------------------------------------------------------------------------------------------


def test_pypi_torch_2_5_1_is_cuda_12_4_through_its_nvidia_wheels() -> None:
    locked = analyse("torch-2.5.1-pypi")
    torch = _claim(locked, "torch")
    assert (torch.major, torch.minor) == (12, 4)
    assert "nvidia-cuda-runtime-cu12 12.4.127" in torch.reason
    assert locked.cuda_versions[(12, 4)] == ("nvidia-cuda-runtime-cu12 12.4.127", "torch 2.5.1")
    assert set(locked.cuda_versions) == {(12, None), (12, 4)}
    assert locked.ships_cuda_libraries
    assert "nvidia-cublas-cu12 12.4.5.8" in locked.cuda_libraries
    assert len(locked.cuda_libraries) == 12  # every nvidia-*-cu12 wheel torch 2.5.1 pins
    assert locked.cudnn_locked == "nvidia-cudnn-cu12 9.1.0.70"
    assert locked.cudnn_locked_major == 9
    assert locked.needs_cudnn and locked.cudnn_needed_by == ("torch 2.5.1",)
    assert locked.torch_version == "2.5.1" and not locked.cpu_only_torch
    assert locked.system_cuda_users == ()


def test_pypi_torch_on_arm64_is_a_cpu_build() -> None:
    """torch 2.5.1's nvidia-* requirements are for x86_64 only: on aarch64 it is CPU-only."""
    projects = [wheel.project for wheel in wheels("torch-2.5.1-pypi", "linux/arm64")]
    assert not [project for project in projects if project.startswith("nvidia-")]
    locked = analyse("torch-2.5.1-pypi", "linux/arm64")
    assert locked.claims == ()
    assert locked.cpu_only_torch
    assert "linux aarch64 wheel with no nvidia-* wheels" in locked.cpu_only_reason
    assert not locked.ships_cuda_libraries


def test_pypi_torch_2_7_1_is_cuda_12_6_and_2_8_0_is_cuda_12_8() -> None:
    assert _claim(analyse("torch-2.7.1-pypi"), "torch").cuda == "12.6"
    locked = analyse("torch-2.8.0-pypi")
    assert _claim(locked, "torch").cuda == "12.8"
    assert locked.cudnn_locked == "nvidia-cudnn-cu12 9.10.2.21"


def test_torch_cu121_is_read_from_its_local_version() -> None:
    locked = analyse("torch-2.4.1-cu121")
    torch = _claim(locked, "torch")
    assert (torch.major, torch.minor, torch.reason) == (12, 1, "its local version +cu121")
    assert locked.cuda_versions[(12, 1)] == (
        "nvidia-cuda-runtime-cu12 12.1.105",
        "torch 2.4.1+cu121",
    )
    assert locked.ships_cuda_libraries  # the +cu121 build requires the nvidia-*-cu12 wheels too
    assert locked.torch == "torch 2.4.1+cu121"


def test_torch_cpu_is_cpu_only() -> None:
    locked = analyse("torch-2.4.1-cpu")
    assert locked.cpu_only_torch and locked.cpu_only_reason == "its local version +cpu"
    assert locked.claims == () and not locked.wants_cuda
    assert not locked.ships_cuda_libraries and not locked.needs_cudnn
    assert locked.torch_version == "2.4.1+cpu"


def test_pypi_torch_without_its_runtime_pin_needs_cuda_of_an_unknown_version() -> None:
    locked = LockedCuda.analyse(
        [("torch", "2.5.1", "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl")]
    )
    (claim,) = locked.unknown_version
    assert claim.project == "torch" and claim.cuda == "unknown"
    assert "no nvidia-cuda-runtime wheel is locked" in claim.reason
    assert locked.cuda_versions == {} and locked.wants_cuda and locked.needs_cudnn


def test_rocm_torch_is_not_cuda() -> None:
    locked = LockedCuda.analyse(
        [("torch", "2.5.1+rocm6.2", "torch-2.5.1+rocm6.2-cp311-cp311-linux_x86_64.whl")]
    )
    assert locked.rocm_torch and locked.claims == ()


# nvidia-* wheels ----------------------------------------------------------------------------------


def test_mixed_majors_are_reported_with_their_projects() -> None:
    locked = analyse("mixed-cuda-majors")
    assert {
        major: [claim.describe() for claim in claims] for major, claims in locked.majors.items()
    } == {
        11: ["cupy-cuda11x 13.3.0"],
        12: ["nvidia-cublas-cu12 12.4.5.8", "nvidia-cuda-runtime-cu12 12.4.127"],
    }
    assert locked.cuda_versions == {
        (11, None): ("cupy-cuda11x 13.3.0",),
        (12, None): ("nvidia-cublas-cu12 12.4.5.8",),
        (12, 4): ("nvidia-cuda-runtime-cu12 12.4.127",),
    }


def test_cuda_11_wheels_and_cudnn_8() -> None:
    locked = LockedCuda.analyse(
        [
            (
                "nvidia-cuda-runtime-cu11",
                "11.8.89",
                "nvidia_cuda_runtime_cu11-11.8.89-py3-none-manylinux1_x86_64.whl",
            ),
            (
                "nvidia-cudnn-cu11",
                "8.7.0.84",
                "nvidia_cudnn_cu11-8.7.0.84-py3-none-manylinux1_x86_64.whl",
            ),
        ]
    )
    assert set(locked.cuda_versions) == {(11, 8), (11, None)}
    assert locked.cudnn_locked_major == 8
    assert locked.cudnn_needed_by == ("nvidia-cudnn-cu11 8.7.0.84",)


def test_cuda_13_wheels_without_suffix() -> None:
    locked = LockedCuda.analyse(
        [
            (
                "nvidia-cuda-runtime",
                "13.0.96",
                "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            ),
            (
                "nvidia-cublas",
                "13.0.0.19",
                "nvidia_cublas-13.0.0.19-py3-none-manylinux_2_27_x86_64.whl",
            ),
            # cuFFT's version is its own (12.x in CUDA 13): it ships CUDA but names no version.
            (
                "nvidia-cufft",
                "12.0.0.15",
                "nvidia_cufft-12.0.0.15-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
            ),
            (
                "nvidia-cudnn-cu13",
                "9.13.0.50",
                "nvidia_cudnn_cu13-9.13.0.50-py3-none-manylinux_2_27_x86_64.whl",
            ),
        ]
    )
    assert locked.cuda_versions == {
        (13, None): ("nvidia-cublas 13.0.0.19", "nvidia-cudnn-cu13 9.13.0.50"),
        (13, 0): ("nvidia-cuda-runtime 13.0.96",),
    }
    assert len(locked.cuda_libraries) == 4
    assert locked.cudnn_locked_major == 9


def test_nvidia_packages_that_are_not_cuda_libraries_are_ignored() -> None:
    locked = LockedCuda.analyse(
        [
            ("nvidia-ml-py", "12.560.30", "nvidia_ml_py-12.560.30-py3-none-any.whl"),
            # A placeholder release of the unsuffixed runtime (PyPI has 0.0.0a0).
            ("nvidia-cuda-runtime", "0.0.0a0", "nvidia_cuda_runtime-0.0.0a0-py3-none-any.whl"),
        ]
    )
    assert locked.claims == () and locked.cuda_libraries == ()


# Other frameworks ---------------------------------------------------------------------------------


def test_onnxruntime_gpu_1_20_needs_system_cuda_12_and_cudnn_9() -> None:
    locked = analyse("onnxruntime-gpu")
    claim = _claim(locked, "onnxruntime-gpu")
    assert (claim.major, claim.minor) == (12, None)
    assert "built for CUDA 12 and cuDNN 9" in claim.reason
    assert locked.needs_cudnn and locked.cudnn_majors == {9: ("onnxruntime-gpu 1.20.2",)}
    assert locked.cudnn_locked is None
    assert not locked.ships_cuda_libraries
    assert locked.system_cuda_users == ("onnxruntime-gpu 1.20.2",)


def test_onnxruntime_gpu_before_1_19_is_cuda_11_with_cudnn_8() -> None:
    filename = "onnxruntime_gpu-1.18.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    locked = LockedCuda.analyse([("onnxruntime-gpu", "1.18.1", filename)])
    assert locked.cuda_versions == {(11, None): ("onnxruntime-gpu 1.18.1",)}
    assert locked.cudnn_majors == {8: ("onnxruntime-gpu 1.18.1",)}


def test_cupy_wheels_name_their_cuda() -> None:
    locked = analyse("cupy-cuda12x")
    assert locked.cuda_versions == {(12, None): ("cupy-cuda12x 13.3.0",)}
    assert not locked.needs_cudnn and locked.system_cuda_users == ("cupy-cuda12x 13.3.0",)
    old = LockedCuda.analyse(
        [("cupy-cuda117", "10.6.0", "cupy_cuda117-10.6.0-cp310-cp310-manylinux1_x86_64.whl")]
    )
    assert old.cuda_versions == {(11, 7): ("cupy-cuda117 10.6.0",)}


def test_jax_cuda_plugins_and_jaxlib_cuda_builds() -> None:
    locked = LockedCuda.analyse(
        [
            (
                "jax-cuda12-plugin",
                "0.4.35",
                "jax_cuda12_plugin-0.4.35-cp311-cp311-manylinux2014_x86_64.whl",
            ),
            (
                "jax-cuda12-pjrt",
                "0.4.35",
                "jax_cuda12_pjrt-0.4.35-py3-none-manylinux2014_x86_64.whl",
            ),
            ("jaxlib", "0.4.35", "jaxlib-0.4.35-cp311-cp311-manylinux2014_x86_64.whl"),
        ]
    )
    assert locked.cuda_versions == {
        (12, None): ("jax-cuda12-pjrt 0.4.35", "jax-cuda12-plugin 0.4.35")
    }
    assert locked.cudnn_needed_by == ("jax-cuda12-plugin 0.4.35",)
    # jaxlib's older CUDA builds (from Google's own index) carry CUDA and cuDNN in the version.
    old = LockedCuda.analyse(
        [
            (
                "jaxlib",
                "0.4.23+cuda12.cudnn89",
                "jaxlib-0.4.23+cuda12.cudnn89-cp311-cp311-manylinux2014_x86_64.whl",
            )
        ]
    )
    assert old.cuda_versions == {(12, None): ("jaxlib 0.4.23+cuda12.cudnn89",)}
    assert old.cudnn_majors == {8: ("jaxlib 0.4.23+cuda12.cudnn89",)}


def test_paddlepaddle_gpu_and_tensorrt() -> None:
    paddle = LockedCuda.analyse(
        [("paddlepaddle-gpu", "2.6.2", "paddlepaddle_gpu-2.6.2-cp311-cp311-manylinux1_x86_64.whl")]
    )
    assert [claim.cuda for claim in paddle.claims] == ["unknown"] and paddle.needs_cudnn
    post = LockedCuda.analyse(
        [
            (
                "paddlepaddle-gpu",
                "2.5.2.post120",
                "paddlepaddle_gpu-2.5.2.post120-cp311-cp311-linux_x86_64.whl",
            )
        ]
    )
    assert post.cuda_versions == {(12, 0): ("paddlepaddle-gpu 2.5.2.post120",)}
    # TensorRT's wheels come from pypi.nvidia.com (PyPI has only the sdists that fetch them).
    tensorrt = LockedCuda.analyse(
        [
            (
                "tensorrt-cu12-libs",
                "10.7.0",
                "tensorrt_cu12_libs-10.7.0-py2.py3-none-manylinux_2_17_x86_64.whl",
            )
        ]
    )
    assert tensorrt.cuda_versions == {(12, None): ("tensorrt-cu12-libs 10.7.0",)}


# Inputs -------------------------------------------------------------------------------------------


def test_tuples_plan_json_and_chosen_wheels_give_the_same_analysis() -> None:
    chosen = wheels("torch-2.5.1-pypi")
    tuples = [(wheel.project, wheel.version, wheel.filename) for wheel in chosen]
    plan_json = json.loads(json.dumps([wheel.to_json() for wheel in chosen]))
    expected = LockedCuda.analyse(chosen)
    assert LockedCuda.analyse(tuples) == expected
    assert LockedCuda.analyse(plan_json) == expected


def test_project_names_are_canonicalised() -> None:
    filename = "nvidia_cuda_runtime_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl"
    locked = LockedCuda.analyse([("NVIDIA_Cuda.Runtime-CU12", "12.4.127", filename)])
    assert locked.cuda_versions == {(12, 4): ("nvidia-cuda-runtime-cu12 12.4.127",)}


def test_a_lock_without_gpu_wheels_says_nothing() -> None:
    locked = LockedCuda.analyse(wheels("onnxruntime-gpu")[:1])  # coloredlogs
    assert locked == LockedCuda()
    assert not locked.wants_cuda and not locked.ships_cuda_libraries and not locked.needs_cudnn
