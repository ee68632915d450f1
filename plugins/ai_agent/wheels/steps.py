"""The `plan`, `group` and `layer` commands: the locked wheels an image needs, grouped into
layers and installed into each; and `check`, whether what a lock pins is still served. Apart
from the command line so that `check` never imports `packaging` and `installer`."""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict

from ..debian.download import CHECK_JOBS, check_url, download_verified
from ..oci.layer import Compression, LayerOptions, write_layer_directory
from ..oci.limits import limits_from
from ..oci.types import canonical_json, check_report
from .bytecode import Compiler
from .errors import UsageError, WheelsError
from .install import (
    InstalledDistribution,
    InstallLayout,
    install_wheel,
    list_wheel,
    verify_sha256,
)
from .metadata import license_facts
from .pexlock import LockError, PexLock, locked_artifacts
from .plan import BIG, MIB, LockedWheel, plan_layers
from .remote import WheelArchives, is_url
from .target import Target

# Beside a layer's descriptor: what `layer` installed, and the bytecode's CPython.
INSTALLED = "installed.json"

# A big distribution's layer (hundreds of MB of shared libraries: torch, the nvidia-* wheels) is
# compressed at level 1 on every core, where most of the build time went: on libcublasLt.so.12
# (benchmarks/gzip_options.py, this project's 2-core machine, 2026-12-05) the layer writer made
# 26.9 MB/s at level 6, 64.8 MB/s at level 1 (0.603 and 0.620 of the size), and level 1 in 1 MiB
# blocks on two cores 124.8 MB/s for the same size.
BIG_LAYER_GZIP_LEVEL = 1


def run_plan(args: argparse.Namespace) -> None:
    """Print the wheels the requirements need on the target."""
    target = Target.parse(args.python, args.platform, args.glibc)
    wheels = PexLock.load(args.lock, target).resolve(args.requirement, target)
    _print_json([wheel.to_json() for wheel in wheels])


def run_check(args: argparse.Namespace) -> None:
    """Print the `check_report` of every artifact the lock pins, asked with HEAD at its URL: all of
    them, not only an image's wheels, since Pants' own builds of the resolve (`test`, `run`)
    download the host's artifacts from the same lock."""
    try:
        text = args.lock.read_text(encoding="utf-8")
    except OSError as error:
        raise LockError(f"{args.lock}: cannot read the lockfile: {error.strerror}") from None
    artifacts = locked_artifacts(text, str(args.lock))
    limits = limits_from(args)
    with ThreadPoolExecutor(CHECK_JOBS) as pool:
        found = pool.map(
            lambda artifact: check_url(artifact.url, artifact.filename, None, limits), artifacts
        )
        findings = [finding for finding in found if finding is not None]
    sys.stdout.buffer.write(check_report(len(artifacts), findings) + b"\n")


def _layout(args: argparse.Namespace) -> InstallLayout:
    if not re.fullmatch(r"3\.[0-9]+", args.python):
        raise UsageError(f"--python takes the image's CPython as X.Y (3.11), got {args.python!r}")
    return InstallLayout(args.prefix, args.interpreter, args.python)


def run_group(args: argparse.Namespace) -> None:
    """Print the layers of `--wheel`s, as `layer` commands are to write them; a wheel given by
    URL is read where it is served (`remote.py`)."""
    wheels = [LockedWheel.parse(argument) for argument in args.wheel]
    with WheelArchives(limits_from(args)) as archives:
        archives.open_all((wheel.location, wheel.filename, wheel.sha256) for wheel in wheels)
        layers = plan_layers(
            wheels, _layout(args), args.threshold_mib * MIB, lambda w: archives[w.location]
        )
    _print_json({"layers": [layer.to_json() for layer in layers]})


def run_layer(args: argparse.Namespace) -> None:
    """Install `--wheel`s (each but its `--skip` paths) into one layer at OUT/; a wheel given
    by URL is downloaded (verified) into a scratch directory first and deleted once installed.
    Each is checked against its sha256 before anything reads it, then against its `--listing`."""
    layout = _layout(args)
    compiler = (
        None
        if args.bytecode_interpreter is None
        else Compiler.probe([args.bytecode_interpreter], int(args.python.split(".")[1]))
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".wheels-", dir=args.output_dir))
    try:
        installed = []
        summaries = []
        for index, argument in enumerate(args.wheel):
            wheel = LockedWheel.parse(argument)
            skip = set(args.skip.get(index, ()))
            downloaded = is_url(wheel.location)
            path = scratch / f"{index}.whl" / wheel.filename if downloaded else wheel.path
            if downloaded:
                path.parent.mkdir()
                download_verified(wheel.location, path, wheel.sha256, limits=limits_from(args))
            else:
                verify_sha256(path, wheel.sha256)
            _check_listing(wheel, path, layout, args, index)
            distribution = install_wheel(
                path, wheel.sha256, layout, scratch / str(index), skip, verified=True
            )
            if downloaded:
                path.unlink()
            unused = skip.difference(distribution.skipped)
            if unused:
                raise WheelsError(
                    f"--skip {sorted(unused)[0]}: {wheel.filename} does not install it"
                )
            if compiler is not None:
                distribution = compiler.compile(distribution, layout.site_packages)
            installed.append(distribution)
            summaries.append(_distribution_json(distribution, wheel.sha256))
        venv = [] if args.venv_version is None else layout.venv_entries(args.venv_version)
        entries = [*venv, *(entry for dist in installed for entry in dist.entries())]
        names = (
            ", ".join(f"{dist.project} {dist.version}" for dist in installed)
            or "the virtual environment"
        )
        descriptor = write_layer_directory(
            entries, args.output_dir, _options(args), f"wheels: {names}"
        )
    finally:
        shutil.rmtree(scratch)
    summary = {
        "digest": descriptor["digest"],
        "bytecode": (
            None
            if compiler is None
            else {"cpython": compiler.version, "cacheTag": compiler.cache_tag}
        ),
        "distributions": summaries,
    }
    (args.output_dir / INSTALLED).write_bytes(canonical_json(summary))


def _check_listing(
    wheel: LockedWheel, path: Path, layout: InstallLayout, args: argparse.Namespace, index: int
) -> None:
    """The wheel, verified, lists what `group` read by byte ranges (its `--listing`, with the
    bytes of its `--skip` and `--measure` paths): else the grouping rests on bytes that are not
    the locked wheel's."""
    listings = args.listing.get(index, ())
    if not listings:
        return
    if len(listings) > 1:
        raise UsageError(f"--wheel {wheel.filename}: one --listing at most")
    measure = {*args.skip.get(index, ()), *args.measure.get(index, ())}
    actual = list_wheel(path, layout, measure).digest()
    if actual != listings[0]:
        raise WheelsError(
            f"{wheel.filename}: the verified wheel lists other files or bytes ({actual}) than"
            f" those it was grouped by ({listings[0]}): its server answered byte-range requests"
            " with other bytes than the whole file. Grouping is cached by the wheels' URLs and"
            " sha256s: run `pants --no-local-cache --no-remote-cache-read package ...` once to"
            " group again; if this persists, the server (or a proxy) rewrites byte ranges."
        )


def _options(args: argparse.Namespace) -> LayerOptions:
    """gzip at `--gzip-level`, else at BIG_LAYER_GZIP_LEVEL for a big wheel's layer (on every
    core) and the usual level for the shared one."""
    level = args.gzip_level
    big_gzip = args.compression == "gzip" and args.kind == BIG
    if level is None and big_gzip:
        level = BIG_LAYER_GZIP_LEVEL
    try:
        compression = Compression(args.compression, level, parallel=big_gzip)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return LayerOptions(compression=compression, mtime=args.source_date_epoch)


def _print_json(value: Any) -> None:
    sys.stdout.write(canonical_json(value).decode() + "\n")


def _distribution_json(distribution: InstalledDistribution, sha256: str) -> Dict[str, Any]:
    """What installed.json says of a distribution; for the SBOM also the wheel's sha256, where
    its `.dist-info` is in the image and what its METADATA says of its licence."""
    metadata = next(
        (file.path for file in distribution.files if file.path.endswith(".dist-info/METADATA")),
        None,
    )
    return {
        "project": distribution.project,
        "version": distribution.version,
        "wheel": distribution.wheel,
        "sha256": sha256,
        "installedSize": distribution.size,
        "notes": list(distribution.notes),
        "distInfo": metadata[: -len("/METADATA")] if metadata else None,
        "license": (
            license_facts((distribution.root / metadata).read_bytes()) if metadata else None
        ),
    }
