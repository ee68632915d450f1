"""Decide and check an agent image's CUDA from the wheels locked for it.

`table` holds the `nvidia/cuda` base images by CUDA version and flavour (and merges the
`[ai-agents].cuda_bases` overrides), `lock` reads what the locked wheels say about CUDA (torch's
local version, the `nvidia-*-cuXX` wheels, onnxruntime-gpu, cupy, jax, ...), and `select` turns an
agent's `accelerator`, `cuda_flavour` and `gpu_archs` plus that analysis into the base image,
environment and labels, or a `CudaProblem` that names the field to change and the fix.

The standard library and `packaging` only: it runs inside Pants (whose own `packaging` it imports),
on the output of `python -m ai_agent.wheels plan`.
"""
