"""The base layer: a lock and its fetched .debs in; one deterministic layer blob and its
`descriptor.json` out, in the shape the `oci layer` command writes, so that the `oci image`
command stacks it like any other layer; and `packages.json`, what the SBOM says of each package
(`rootfs.package_facts`), learnt while unpacking.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict

from ..oci.layer import LayerOptions, write_layer_directory
from ..oci.types import canonical_json
from .fetch import fetched_debs
from .lock import Lock
from .rootfs import build_rootfs_with_packages

# Beside a base layer's descriptor: each package's pin, source, maintainer and licences.
PACKAGES = "packages.json"


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
    finished blob, packages.json and descriptor.json is left there, and the descriptor is
    written last.
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
        entries, facts = build_rootfs_with_packages(lock, architecture, paths, scratch, bytecode)
        summary = {"architecture": architecture, "suite": request.suite, "packages": facts}
        (output_dir / PACKAGES).write_bytes(canonical_json(summary))
        return write_layer_directory(entries, output_dir, options, created_by)
    finally:
        shutil.rmtree(scratch)
