"""The base layer: a lock and its fetched .debs in; one deterministic layer blob and its
`descriptor.json` out, in the shape the `oci layer` command writes, so that the `oci image`
command stacks it like any other layer.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict

from ..oci.layer import LayerOptions, write_layer_directory
from .fetch import fetched_debs
from .lock import Lock
from .rootfs import build_rootfs


def write_base_layer(
    lock: Lock,
    architecture: str,
    debs: Path,
    output_dir: Path,
    options: LayerOptions = LayerOptions(),
    bytecode: str = "auto",
) -> Dict[str, Any]:
    """Unpack the lock's packages for `architecture` (their .debs in `debs`, checked against the
    lock first) into `output_dir/layer.tar[.gz]` and write `output_dir/descriptor.json`.

    Files are unpacked into a scratch directory inside `output_dir`, removed afterwards, so the
    build needs disk space for the unpacked tree (~70 MB) but little memory. Nothing but the
    finished blob and descriptor.json is left there, and the descriptor is written last.
    """
    packages = lock.packages_for(architecture)
    paths = fetched_debs(packages, debs)
    output_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=output_dir))
    request = lock.request
    created_by = (
        f"debian {request.suite} {architecture} base ({request.variant}):"
        f" {len(packages)} packages"
    )
    try:
        entries = build_rootfs(lock, architecture, paths, scratch, bytecode)
        return write_layer_directory(entries, output_dir, options, created_by)
    finally:
        shutil.rmtree(scratch)
