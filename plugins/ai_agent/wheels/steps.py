"""The `plan` and `layers` commands: the locked wheels an image needs, installed into layers.
Apart from the command line so that a `fetch` step never imports `packaging` and `installer`."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from ..oci.layer import LAYER_DESCRIPTOR, Compression, LayerOptions, write_layer_directory
from ..oci.types import canonical_json
from .bytecode import Compiler
from .errors import WheelsError
from .install import InstalledDistribution, InstallLayout, install_wheel
from .pexlock import ChosenWheel, PexLock
from .plan import BIG, MIB, PlannedLayer, plan_layers
from .target import Target

# A big distribution's layer (hundreds of MB of shared libraries: torch, the nvidia-* wheels) is
# compressed at level 1, where most of the build time went: on libcublasLt.so.12 (200 MiB of it,
# this project's 2-core machine, 2026-12-05) zlib gave 72 MB/s and 0.569 of the size at level 1,
# 30 MB/s and 0.550 at level 6, on one core.
BIG_LAYER_GZIP_LEVEL = 1


class WheelsMissing(WheelsError):
    """A wheel the plan needs was not downloaded into the wheels directory."""


def resolve_wheels(args: argparse.Namespace, target: Target) -> List[ChosenWheel]:
    return PexLock.load(args.lock, target).resolve(args.requirement, target)


def run_layers(args: argparse.Namespace, target: Target) -> Dict[str, Any]:
    wheels = resolve_wheels(args, target)
    missing = [wheel.filename for wheel in wheels if not (args.wheels / wheel.filename).is_file()]
    if missing:
        raise WheelsMissing(f"{args.wheels}: missing {', '.join(missing)} (run `plan` first)")
    layout = InstallLayout(args.prefix, args.interpreter, f"3.{target.minor}")
    compiler = (
        None
        if args.bytecode_interpreter is None
        else Compiler.probe([args.bytecode_interpreter], target)
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".wheels-", dir=args.output_dir))
    try:
        installed = []
        for wheel in wheels:
            distribution = install_wheel(
                args.wheels / wheel.filename, wheel.sha256, layout, scratch / wheel.project
            )
            if compiler is not None:
                distribution = compiler.compile(distribution, layout.site_packages)
            installed.append(distribution)
        venv = layout.venv_entries(target.python_full_version)
        layers = plan_layers(installed, args.threshold_mib * MIB, venv)
        written = [_write_layer(layer, args.output_dir, _options(args, layer)) for layer in layers]
    finally:
        shutil.rmtree(scratch)
    summary = {
        "target": {"python": args.python, "platform": args.platform, "glibc": args.glibc},
        "prefix": layout.prefix,
        "thresholdBytes": args.threshold_mib * MIB,
        "bytecode": (
            None
            if compiler is None
            else {"cpython": compiler.version, "cacheTag": compiler.cache_tag}
        ),
        "layers": written,
    }
    (args.output_dir / "layers.json").write_bytes(canonical_json(summary))
    return summary


def _options(args: argparse.Namespace, layer: PlannedLayer) -> LayerOptions:
    """gzip at `--gzip-level`, else at BIG_LAYER_GZIP_LEVEL for a big distribution's layer and
    the usual level for the shared one."""
    level = args.gzip_level
    if level is None and args.compression == "gzip" and layer.kind == BIG:
        level = BIG_LAYER_GZIP_LEVEL
    return LayerOptions(
        compression=Compression(args.compression, level), mtime=args.source_date_epoch
    )


def _write_layer(layer: PlannedLayer, output_dir: Path, options: LayerOptions) -> Dict[str, Any]:
    """Write OUT/<name>/ as the `oci layer` command would; the blob is moved in when complete."""
    names = (
        ", ".join(f"{dist.project} {dist.version}" for dist in layer.distributions)
        or "the virtual environment"
    )
    descriptor = write_layer_directory(
        layer.entries(), output_dir / layer.name, options, f"wheels: {names}"
    )
    return {
        "name": layer.name,
        "kind": layer.kind,
        "descriptor": f"{layer.name}/{LAYER_DESCRIPTOR}",
        "digest": descriptor["digest"],
        "diffID": descriptor["diffID"],
        "size": descriptor["size"],
        "distributions": [_distribution_json(dist) for dist in layer.distributions],
    }


def _distribution_json(distribution: InstalledDistribution) -> Dict[str, Any]:
    return {
        "project": distribution.project,
        "version": distribution.version,
        "wheel": distribution.wheel,
        "installedSize": distribution.size,
        "notes": list(distribution.notes),
    }
