from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import pytest

from ..wheels.pexlock import PexLock
from ..wheels.target import Target
from .lock import LockedCuda
from .select import CudaChoice, parse_gpu_archs, select_cuda
from .table import DEFAULT_TABLE, CudaProblem, CudaVersion, UnknownCudaVersion, merge_table

TESTDATA = Path(__file__).parent / "testdata"


def locked(name: str) -> LockedCuda:
    """What the fixture's wheels for CPython 3.11 on linux/amd64 say about CUDA."""
    path = TESTDATA / f"{name}.lock"
    text = path.read_text(encoding="utf-8")
    document = json.loads(
        "".join(line for line in text.splitlines(True) if not line.startswith("//"))
    )
    target = Target.parse("3.11", "linux/amd64", "2.36")
    return LockedCuda.analyse(PexLock.load(path, target).resolve(document["requirements"], target))


def of(*distributions: Tuple[str, str, str]) -> LockedCuda:
    return LockedCuda.analyse(list(distributions))


TORCH_251 = ("torch", "2.5.1", "torch-2.5.1-cp311-cp311-manylinux1_x86_64.whl")
ONNXRUNTIME = (
    "onnxruntime-gpu",
    "1.20.2",
    "onnxruntime_gpu-1.20.2-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
)
CUPY_11 = ("cupy-cuda11x", "13.3.0", "cupy_cuda11x-13.3.0-cp311-cp311-manylinux2014_x86_64.whl")
RUNTIME_13 = (
    "nvidia-cuda-runtime",
    "13.0.96",
    "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
)


def problem(*args: object, **kwargs: object) -> str:
    with pytest.raises(CudaProblem) as raised:
        select_cuda(*args, **kwargs)  # type: ignore[arg-type]
    return str(raised.value)


# The version ------------------------------------------------------------------------------------


def test_pypi_torch_2_5_1_gets_cuda_12_4_base() -> None:
    choice = select_cuda("cuda", locked("torch-2.5.1-pypi"))
    assert choice == CudaChoice(
        version=CudaVersion(12, 4),
        flavour="base",
        base_reference="nvidia/cuda:12.4.1-base-ubuntu22.04",
        env={
            "NVIDIA_VISIBLE_DEVICES": "all",
            "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
            "NVIDIA_REQUIRE_CUDA": "cuda>=12.4",
        },
        labels={
            "ai-agent.cuda.version": "12.4",
            "ai-agent.cuda.flavour": "base",
            "ai-agent.cuda.base": "nvidia/cuda:12.4.1-base-ubuntu22.04",
        },
        warnings=[],
        origin="the lock's torch 2.5.1: a CUDA build linked against the locked"
        " nvidia-cuda-runtime-cu12 12.4.127",
        # Where torch's 12 nvidia-* wheels put their libraries (checked against the wheels by
        # tests/cuda for the runtime one).
        library_dirs=tuple(
            f"nvidia/{name}/lib"
            for name in (
                "cublas",
                "cuda_cupti",
                "cuda_nvrtc",
                "cuda_runtime",
                "cudnn",
                "cufft",
                "curand",
                "cusolver",
                "cusparse",
                "nccl",
                "nvjitlink",
                "nvtx",
            )
        ),  # fmt: skip
        libraries_to_lock=(),
    )
    assert choice.wheels_carry_cuda


def test_what_to_lock_when_no_wheel_ships_cuda() -> None:
    onnxruntime = select_cuda("cuda", locked("onnxruntime-gpu"))
    assert onnxruntime.libraries_to_lock == ("onnxruntime-gpu[cuda,cudnn]",)
    assert not onnxruntime.wheels_carry_cuda and onnxruntime.library_dirs == ()
    nothing_locked = select_cuda("cuda12.4", LockedCuda.analyse([]))
    assert nothing_locked.libraries_to_lock == ("nvidia-cuda-runtime-cu12", "nvidia-cublas-cu12")


def test_an_explicit_version_that_matches_the_lock_is_used() -> None:
    choice = select_cuda("cuda12.4", locked("torch-2.5.1-pypi"))
    assert (str(choice.version), choice.flavour, choice.warnings) == ("12.4", "base", [])
    assert choice.origin == "accelerator='cuda12.4'"
    assert select_cuda("cuda12.4.1", locked("torch-2.5.1-pypi")).version == CudaVersion(12, 4)


def test_torch_cu121_follows_its_local_version() -> None:
    choice = select_cuda("cuda", locked("torch-2.4.1-cu121"))
    assert choice.base_reference == "nvidia/cuda:12.1.1-base-ubuntu22.04"
    assert choice.env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.1"


def test_an_explicit_minor_must_equal_the_locked_one() -> None:
    message = problem("cuda12.4", locked("torch-2.4.1-cu121"))
    assert message.startswith(
        "locked torch 2.4.1+cu121 is built for CUDA 12.1 but accelerator is cuda12.4"
    )
    assert "set accelerator='cuda12.1' (or accelerator='cuda' to follow the lock)" in message
    assert (
        "or lock torch==2.4.1+cu124 from https://download.pytorch.org/whl/cu124 and regenerate"
        " the lockfile" in message
    )
    assert "nvidia-cuda-runtime-cu12 12.1.105 (CUDA 12.1)" in message


def test_the_relock_hint_knows_which_cuda_builds_a_torch_series_has() -> None:
    message = problem("cuda12.6", locked("torch-2.5.1-pypi"))
    assert message.startswith(
        "locked torch 2.5.1 is built for CUDA 12.4 but accelerator is cuda12.6"
    )
    assert "linked against the locked nvidia-cuda-runtime-cu12 12.4.127" in message
    assert "(torch 2.5's CUDA builds are cu118, cu121, cu124)" in message
    # PyPI's torch 2.4 is the cu121 build.
    message = problem(
        "cuda12.1", of(("torch", "2.4.1+cu124", "torch-2.4.1+cu124-cp311-cp311-linux_x86_64.whl"))
    )
    assert (
        "lock torch==2.4.1 from PyPI (its default build is CUDA 12.1) or torch==2.4.1+cu121"
        in message
    )


def test_an_explicit_major_must_match_the_locked_major() -> None:
    message = problem("cuda11.8", locked("torch-2.4.1-cu121"))
    assert message.startswith(
        "locked torch 2.4.1+cu121 is built for CUDA 12.1 but accelerator is cuda11.8"
    )
    message = problem("cuda11.8", locked("onnxruntime-gpu"))
    assert message.startswith(
        "locked onnxruntime-gpu 1.20.2 is built for CUDA 12 but accelerator is cuda11.8"
    )
    assert "set accelerator to a CUDA 12 version such as 'cuda12.Y'" in message


def test_a_lock_that_only_knows_the_major_accepts_any_minor_of_it() -> None:
    choice = select_cuda("cuda12.6", locked("onnxruntime-gpu"))
    assert choice.base_reference == "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04"
    assert choice.warnings == []


def test_a_major_only_lock_gets_the_preferred_minor_with_a_warning() -> None:
    choice = select_cuda("cuda", locked("onnxruntime-gpu"))
    assert (str(choice.version), choice.flavour) == ("12.4", "cudnn-runtime")
    assert choice.base_reference == "nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
    assert choice.warnings == [
        "the lock only says CUDA 12 (onnxruntime-gpu 1.20.2), not which 12.x: chose CUDA 12.4;"
        " set accelerator='cuda12.Y' to choose another"
    ]


def test_no_cuda_wheel_and_accelerator_cuda_is_an_error() -> None:
    message = problem("cuda", locked("torch-2.4.1-cpu"))
    assert message.startswith(
        "no CUDA wheel is locked for this agent (torch 2.4.1+cpu is a CPU-only build: its local"
        " version +cpu)"
    )
    assert "set accelerator='cuda12.4' to choose the CUDA version yourself" in message
    assert "or accelerator='cpu'" in message
    assert problem("cuda", of()).startswith("no CUDA wheel is locked for this agent, so")


def test_cuda_of_unknown_version_needs_an_explicit_accelerator() -> None:
    message = problem("cuda", of(TORCH_251))
    assert message.startswith("the lock needs CUDA (torch 2.5.1: PyPI's Linux x86_64 torch")
    assert "set accelerator='cudaX.Y'" in message
    assert "(PyPI's torch 2.5 is built for CUDA 12.4: accelerator='cuda12.4')" in message
    assert select_cuda("cuda12.4", of(TORCH_251)).version == CudaVersion(12, 4)


def test_two_cuda_majors_in_one_resolve_are_an_error() -> None:
    message = problem("cuda", locked("mixed-cuda-majors"))
    assert message == (
        "the lock mixes CUDA majors (CUDA 11: cupy-cuda11x 13.3.0; CUDA 12: nvidia-cublas-cu12"
        " 12.4.5.8, nvidia-cuda-runtime-cu12 12.4.127), but one image has one CUDA: lock wheels"
        " of a single CUDA major, e.g. CUDA 12 (e.g. cupy-cuda12x instead of cupy-cuda11x), and"
        " regenerate the lockfile"
    )
    assert problem("cuda12.4", locked("mixed-cuda-majors")) == message


def test_two_cuda_versions_of_one_major_are_an_error() -> None:
    message = problem(
        "cuda",
        of(
            ("torch", "2.4.1+cu121", "torch-2.4.1+cu121-cp311-cp311-linux_x86_64.whl"),
            (
                "nvidia-cuda-runtime-cu12",
                "12.4.127",
                "nvidia_cuda_runtime_cu12-12.4.127-py3-none-manylinux2014_x86_64.whl",
            ),
        ),
    )
    assert message.startswith(
        "the lock's wheels are built for different CUDA versions (CUDA 12.1: torch 2.4.1+cu121;"
        " CUDA 12.4: nvidia-cuda-runtime-cu12 12.4.127)"
    )


def test_rocm_torch_cannot_be_a_cuda_agent() -> None:
    message = problem(
        "cuda", of(("torch", "2.5.1+rocm6.2", "torch-2.5.1+rocm6.2-cp311-cp311-linux_x86_64.whl"))
    )
    assert message.startswith("locked torch 2.5.1+rocm6.2 is a ROCm (AMD GPU) build")


def test_cpu_only_torch_in_a_cuda_agent_is_a_warning() -> None:
    choice = select_cuda("cuda12.4", locked("torch-2.4.1-cpu"))
    assert choice.flavour == "runtime"
    assert choice.warnings == [
        "locked torch 2.4.1+cpu is a CPU-only build (its local version +cpu): torch will not use"
        " the GPU in this CUDA image; lock torch==2.4.1+cu124 from"
        " https://download.pytorch.org/whl/cu124 and regenerate the lockfile, or set"
        " accelerator='cpu'"
    ]


@pytest.mark.parametrize("accelerator", ["cpu", "cuda12", "cu124", "rocm6.2", "gpu", "cuda-12.4"])
def test_accelerators_other_than_cuda_are_refused(accelerator: str) -> None:
    message = problem(accelerator, locked("torch-2.5.1-pypi"))
    assert message.startswith(f"accelerator={accelerator!r} is not a CUDA accelerator")
    assert "accelerator='cudaX.Y' such as 'cuda12.4'" in message


def test_a_version_outside_the_table_is_unknown() -> None:
    with pytest.raises(UnknownCudaVersion) as raised:
        select_cuda("cuda12.5", of(ONNXRUNTIME))
    message = str(raised.value)
    assert "CUDA 12.5 (from accelerator='cuda12.5') has no base image" in message
    assert "known: 11.8, 12.1, 12.4, 12.6, 12.8, 12.9, 13.0" in message
    assert '[ai-agents].cuda_bases = {"12.5/runtime": ' in message
    torch_cu117 = ("torch", "2.0.1+cu117", "torch-2.0.1+cu117-cp311-cp311-linux_x86_64.whl")
    with pytest.raises(UnknownCudaVersion, match=r"CUDA 11.7 \(from the lock's torch 2.0.1\+cu117"):
        select_cuda("cuda", of(torch_cu117))


def test_overrides_add_versions_and_mirror_bases() -> None:
    mirror = "mirror.example/nvidia/cuda:12.4.1-base-ubuntu22.04@sha256:" + "b" * 64
    table = merge_table(
        DEFAULT_TABLE,
        {"12.4/base": mirror, "12.5/cudnn-runtime": "mirror.example/cuda:12.5.1-cudnn-runtime"},
    )
    choice = select_cuda("cuda", locked("torch-2.5.1-pypi"), table=table)
    assert choice.base_reference == mirror and choice.labels["ai-agent.cuda.base"] == mirror
    choice = select_cuda("cuda12.5", of(ONNXRUNTIME), table=table)
    assert choice.base_reference == "mirror.example/cuda:12.5.1-cudnn-runtime"
    message = problem("cuda12.5", of(ONNXRUNTIME), "runtime", table=table)
    assert "no 'runtime' image for CUDA 12.5 (it has cudnn-runtime)" in message


# The flavour ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, flavour",
    [
        ("torch-2.5.1-pypi", "base"),  # pip ships CUDA: no second copy
        ("torch-2.4.1-cu121", "base"),
        ("onnxruntime-gpu", "cudnn-runtime"),  # loads CUDA and cuDNN from the system
        ("cupy-cuda12x", "runtime"),  # loads CUDA's libraries, no cuDNN
    ],
)
def test_the_default_flavour(name: str, flavour: str) -> None:
    assert select_cuda("cuda", locked(name)).flavour == flavour


@pytest.mark.parametrize("flavour", ["runtime", "cudnn-runtime", "devel"])
def test_a_bigger_flavour_while_pip_ships_cuda_installs_it_twice(flavour: str) -> None:
    choice = select_cuda("cuda", locked("torch-2.5.1-pypi"), flavour)
    assert choice.flavour == flavour
    assert choice.base_reference.startswith("nvidia/cuda:12.4.1-")
    (warning,) = choice.warnings
    assert warning.startswith(
        "CUDA installed twice: the lock ships CUDA's libraries as wheels (nvidia-cublas-cu12"
        " 12.4.5.8, nvidia-cuda-cupti-cu12 12.4.127, nvidia-cuda-nvrtc-cu12 12.4.127 and 9 more)"
        f" and cuda_flavour={flavour!r} adds nvidia/cuda's copies"
    )
    assert ("compiles CUDA code" in warning) == (flavour == "devel")


def test_an_explicit_flavour_that_lacks_libraries_warns() -> None:
    choice = select_cuda("cuda", locked("cupy-cuda12x"), "base")
    assert choice.base_reference == "nvidia/cuda:12.4.1-base-ubuntu22.04"
    assert choice.warnings[1] == (
        "cuda_flavour='base' has only libcudart, but cupy-cuda12x 13.3.0 needs CUDA's libraries"
        " (cuBLAS, cuFFT, ...), which the lock does not ship: set cuda_flavour='runtime' or leave"
        " it unset"
    )
    choice = select_cuda("cuda12.4", locked("onnxruntime-gpu"), "runtime")
    assert choice.warnings == [
        "onnxruntime-gpu 1.20.2 needs cuDNN, which cuda_flavour='runtime' lacks and the lock does"
        " not ship: set cuda_flavour='cudnn-runtime' or leave it unset"
    ]


def test_system_loaders_next_to_shipped_cuda_are_warned_about() -> None:
    wheels = _torch_251_wheels() + [ONNXRUNTIME]
    choice = select_cuda("cuda", LockedCuda.analyse(wheels))
    assert choice.flavour == "base"
    assert choice.warnings == [
        "onnxruntime-gpu 1.20.2 loads CUDA's libraries from the system library path rather than"
        " from the nvidia-* wheels, and the 'base' flavour has only libcudart: if they fail to"
        " load cuBLAS or cuDNN, set cuda_flavour='cudnn-runtime' (or 'runtime')"
    ]


def _torch_251_wheels() -> List[Tuple[str, str, str]]:
    path = TESTDATA / "torch-2.5.1-pypi.lock"
    target = Target.parse("3.11", "linux/amd64", "2.36")
    return [
        (wheel.project, wheel.version, wheel.filename)
        for wheel in PexLock.load(path, target).resolve(["torch==2.5.1"], target)
    ]


def test_an_unknown_flavour_is_refused() -> None:
    message = problem("cuda", locked("torch-2.5.1-pypi"), "slim")
    assert message == (
        "cuda_flavour='slim' is not a flavour: use one of base, runtime, cudnn-runtime, devel, or"
        " leave it unset for 'base' (what this lock needs)"
    )


def test_a_cudnn_runtime_base_must_bring_the_cudnn_major_needed() -> None:
    message = problem("cuda12.1", locked("onnxruntime-gpu"))
    assert message.startswith(
        "onnxruntime-gpu 1.20.2 needs cuDNN 9, but CUDA 12.1's cudnn-runtime base has cuDNN 8"
    )
    assert "set accelerator to CUDA >= 12.3 (accelerator='cuda12.4' or later)" in message
    jaxlib = (
        "jaxlib",
        "0.4.23+cuda12.cudnn89",
        "jaxlib-0.4.23+cuda12.cudnn89-cp311-cp311-manylinux2014_x86_64.whl",
    )
    message = problem("cuda12.4", of(jaxlib))
    assert message.startswith("jaxlib 0.4.23+cuda12.cudnn89 needs cuDNN 8, but CUDA 12.4's")
    # With only the major locked, `cuda` picks a version whose base has the right cuDNN.
    assert str(select_cuda("cuda", of(jaxlib)).version) == "12.1"


# GPU architectures --------------------------------------------------------------------------------


def test_blackwell_needs_cuda_12_8_and_torch_2_7() -> None:
    message = problem("cuda", locked("torch-2.7.1-pypi"), gpu_archs=["sm_120"])
    assert message == (
        "gpu_archs has sm_120 (Blackwell, RTX 50/RTX PRO), which needs CUDA >= 12.8 and torch >="
        " 2.7, but the image's CUDA is 12.6 (from the lock's torch 2.7.1: a CUDA build linked"
        " against the locked nvidia-cuda-runtime-cu12 12.6.77) and the lock has torch 2.7.1:"
        " lock torch==2.7.1+cu128 from https://download.pytorch.org/whl/cu128 or torch>=2.8 from"
        " PyPI (built for CUDA 12.8) and regenerate the lockfile (accelerator='cuda' follows the"
        " lock), or remove sm_120 from gpu_archs"
    )
    message = problem("cuda12.4", locked("torch-2.5.1-pypi"), gpu_archs=["sm_100"])
    assert "needs CUDA >= 12.8 and torch >= 2.7, but the image's CUDA is 12.4" in message
    assert "lock torch 2.7 (+cu128) from https://download.pytorch.org/whl/cu128" in message
    assert "then set accelerator='cuda12.8' (or 'cuda' to follow the lock)" in message


def test_blackwell_on_torch_2_8_0() -> None:
    choice = select_cuda("cuda", locked("torch-2.8.0-pypi"), gpu_archs=["sm_120", "sm_100"])
    assert choice.base_reference == "nvidia/cuda:12.8.1-base-ubuntu24.04"
    assert choice.env["NVIDIA_REQUIRE_CUDA"] == "cuda>=12.8"
    assert choice.labels["ai-agent.gpu-archs"] == "sm_100,sm_120"


def test_blackwell_on_torch_2_6_with_cuda_12_8_still_needs_torch_2_7() -> None:
    torch = ("torch", "2.6.0+cu126", "torch-2.6.0+cu126-cp311-cp311-linux_x86_64.whl")
    message = problem("cuda", of(torch), gpu_archs=["sm_120"])
    assert "needs CUDA >= 12.8 and torch >= 2.7, but the image's CUDA is 12.6" in message


def test_hopper_needs_cuda_11_8_and_torch_2_0_1() -> None:
    assert (
        select_cuda("cuda", locked("torch-2.5.1-pypi"), gpu_archs=["sm_90"]).labels[
            "ai-agent.gpu-archs"
        ]
        == "sm_90"
    )
    assert select_cuda("cuda11.8", of(CUPY_11), gpu_archs=["sm_90"]).version == CudaVersion(11, 8)
    torch_200 = ("torch", "2.0.0+cu118", "torch-2.0.0+cu118-cp311-cp311-linux_x86_64.whl")
    message = problem("cuda", of(torch_200), gpu_archs=["sm_90"])
    assert message.startswith(
        "gpu_archs has sm_90 (Hopper, H100/H200), which needs CUDA >= 11.8 and torch >= 2.0.1,"
        " but the image's CUDA is 11.8"
    )
    # CUDA 11.7 from a private mirror: below Hopper's floor.
    table = merge_table(DEFAULT_TABLE, {"11.7/runtime": "mirror.example/cuda:11.7.1-runtime"})
    cupy_117 = ("cupy-cuda117", "10.6.0", "cupy_cuda117-10.6.0-cp310-cp310-manylinux1_x86_64.whl")
    message = problem("cuda", of(cupy_117), gpu_archs=["sm_90"], table=table)
    assert message.startswith(
        "gpu_archs has sm_90 (Hopper, H100/H200), which needs CUDA >= 11.8, but the image's CUDA"
        " is 11.7 (from the lock's cupy-cuda117 10.6.0: CuPy's wheel for CUDA 11.7): lock wheels"
        " built for CUDA >= 11.8"
    )


def test_a_major_only_lock_picks_a_version_the_gpu_archs_allow() -> None:
    choice = select_cuda("cuda", locked("cupy-cuda12x"), gpu_archs=["sm_120"])
    assert str(choice.version) == "12.8"
    assert "chose CUDA 12.8" in choice.warnings[0]


def test_cuda_13_dropped_volta() -> None:
    assert (
        select_cuda("cuda", of(RUNTIME_13)).base_reference == "nvidia/cuda:13.0.1-base-ubuntu24.04"
    )
    message = problem("cuda", of(RUNTIME_13), gpu_archs=["sm_70"])
    assert message.startswith(
        "gpu_archs has sm_70 (Volta, V100), which CUDA 13 and later no longer support, but the"
        " image's CUDA is 13.0"
    )


def test_unknown_gpu_archs_list_the_known_ones() -> None:
    message = problem("cuda", locked("torch-2.5.1-pypi"), gpu_archs=["sm_90", "sm_61"])
    assert message.startswith(
        "gpu_archs has 'sm_61', which is not a known GPU architecture; known:"
    )
    for arch in ("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"):
        assert f"{arch} (" in message
    assert "gpu_archs=['sm_90'] for H100" in message


def test_gpu_archs_are_normalised() -> None:
    assert parse_gpu_archs(["SM_120", " sm_90", "sm_90"]) == ("sm_90", "sm_120")
    assert parse_gpu_archs("sm_90, sm_80") == ("sm_80", "sm_90")
    assert parse_gpu_archs(()) == ()
