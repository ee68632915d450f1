"""What CUDA the agent sees, through the CUDA runtime shipped as the `nvidia-cuda-runtime-cu12`
wheel: the runtime's version (known without a GPU) and the number of GPUs the driver exposes.

On a host without an NVIDIA driver (or a container started without GPUs) the runtime answers
with an error code instead of a count; that is reported, not raised: the router runs on CPU.
"""

import ctypes
from pathlib import Path
from typing import Any

import nvidia.cuda_runtime

CUDA_SUCCESS = 0


def _libcudart() -> ctypes.CDLL:
    (package_dir,) = nvidia.cuda_runtime.__path__
    return ctypes.CDLL(str(Path(package_dir) / "lib" / "libcudart.so.12"))


def cuda_status() -> dict[str, Any]:
    """`{"runtime": "12.4", "devices": N}`, or with `"error"` when no GPU is usable."""
    cudart = _libcudart()
    version = ctypes.c_int()
    cudart.cudaRuntimeGetVersion(ctypes.byref(version))
    status: dict[str, Any] = {
        "runtime": f"{version.value // 1000}.{version.value % 1000 // 10}",
        "devices": 0,
    }
    count = ctypes.c_int()
    code = cudart.cudaGetDeviceCount(ctypes.byref(count))
    if code == CUDA_SUCCESS:
        status["devices"] = count.value
    else:
        cudart.cudaGetErrorString.restype = ctypes.c_char_p
        status["error"] = cudart.cudaGetErrorString(code).decode()
    return status
