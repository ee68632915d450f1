"""What the classifier found to run on, for /healthz: torch and the CUDA it was built with, the
CUDA runtime as the dynamic loader finds it (by soname, as native code linking it would), and,
with a GPU, its name and a matrix product computed on it and checked against the CPU's."""

import ctypes
from typing import Any

import torch


def _cuda_runtime() -> str:
    """The version of the libcudart.so.12 that the loader finds, or why none loads."""
    try:
        cudart = ctypes.CDLL("libcudart.so.12")
    except OSError as error:
        return f"not loadable: {error}"
    version = ctypes.c_int()
    cudart.cudaRuntimeGetVersion(ctypes.byref(version))
    return f"{version.value // 1000}.{version.value % 1000 // 10}"


def _gpu_matmul() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    left, right = (torch.randn(512, 512, generator=generator) for _ in range(2))
    on_gpu = (left.cuda() @ right.cuda()).cpu()
    return {
        "gpu": torch.cuda.get_device_name(0),
        "matmul_max_abs_error": float((on_gpu - left @ right).abs().max()),
    }


def accelerator_status() -> dict[str, Any]:
    status: dict[str, Any] = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudart": _cuda_runtime(),
        "cuda_available": torch.cuda.is_available(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }
    if status["cuda_available"]:
        status.update(_gpu_matmul())
    return status
