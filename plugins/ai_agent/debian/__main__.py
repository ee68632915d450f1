"""The command line that lock generation and sandboxed build processes run:
`python -m <this package> COMMAND`.

    lock  --suite bookworm --arch amd64 [--arch arm64] [--package NAME ...] [--exclude NAME ...]
          [--variant minimal|shell] [--mirror ARCHIVE=URL ...] [--keyring FILE]
          [--no-check-valid-until] [LIMITS] --output lock.json
    fetch --lock lock.json [--arch amd64] --output-dir DEBS [--mirror ARCHIVE=URL ...]
          [--refresh-command CMD] [LIMITS]
    layer --lock lock.json [--arch amd64] --debs DEBS --output-dir OUT
          [--compression none|gzip] [--gzip-level 1..9] [--source-date-epoch N]
          [--bytecode auto|yes|no]
    check --lock lock.json [--mirror ARCHIVE=URL ...] [LIMITS]

`lock` reads the signed indexes (gpgv + debian-archive-keyring) and writes the lock; without
`--package` it locks the Python 3.11 runtime. `fetch` downloads the pinned .debs, trying each
archive's mirrors in the order given (`--mirror debian=URL --mirror debian-security=URL`; giving
one for an archive replaces its default, deb.debian.org); `lock` reads the first mirror of each.
`layer` writes OUT/layer.tar (or layer.tar.gz) and OUT/descriptor.json, the same descriptor the
`oci layer` command writes. `--arch` may be left out when the lock covers one architecture.
LIMITS bound each download (`oci/limits.py`; `--help` gives the defaults): [--connect-timeout
SECONDS] [--read-timeout SECONDS] [--attempts N] [--total-timeout SECONDS].
`check` asks the mirrors, with HEAD, whether each .deb the lock pins (every architecture) is still
served with its pinned size, and prints `{"checked": N, "problems": [{"item", "status",
"detail"}, ...]}` with status `gone`, `mismatch` or `unreachable` (`oci.types.Finding`); a .deb is
fine if any mirror of its archive serves it. Problems found still exit 0: they are the answer.

On a bad input the exit status is 2 and stderr has one `error: ...` line naming the problem.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..oci.errors import OciError
from ..oci.layer import DEFAULT_MTIME, Compression, LayerOptions
from ..oci.limits import add_limit_arguments, limits_from
from ..oci.types import check_report
from .base import write_base_layer
from .download import DOWNLOAD_LIMITS
from .errors import DebianError
from .fetch import check_debs, fetch_debs
from .index import DEBIAN_ARCHIVE_KEYRING, DEFAULT_MIRRORS
from .lock import PYTHON_RUNTIME_PACKAGES, VARIANTS, Lock, LockRequest, generate_lock
from .rootfs import BYTECODE_MODES


class UsageError(DebianError):
    """A command-line value is malformed."""


def parse_mirrors(values: Sequence[str]) -> Dict[str, Tuple[str, ...]]:
    """`ARCHIVE=URL` values over the defaults: the URLs given for an archive, in order, replace
    its default mirror."""
    given: Dict[str, List[str]] = {}
    for value in values:
        archive, equals, url = value.partition("=")
        if not equals or archive not in DEFAULT_MIRRORS or not url:
            raise UsageError(
                f"--mirror {value!r}: expected ARCHIVE=URL with ARCHIVE one of"
                f" {sorted(DEFAULT_MIRRORS)}, e.g. debian=http://deb.debian.org/debian"
            )
        given.setdefault(archive, []).append(url.rstrip("/"))
    return {archive: tuple(given.get(archive, urls)) for archive, urls in DEFAULT_MIRRORS.items()}


def refresh_command(request: LockRequest, lock_path: Path) -> str:
    """The `lock` command line that regenerates a lock for `request`."""
    words = ["python", "-m", __package__ or "ai_agent.debian", "lock", "--suite", request.suite]
    for architecture in request.architectures:
        words += ["--arch", architecture]
    for package in request.packages:
        words += ["--package", package]
    for package in request.excludes:
        words += ["--exclude", package]
    words += ["--variant", request.variant, "--output", str(lock_path)]
    return shlex.join(words)


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _architecture(lock: Lock, requested: Optional[str]) -> str:
    if requested is not None:
        return requested
    if len(lock.request.architectures) != 1:
        raise UsageError(
            f"the lock covers {', '.join(lock.request.architectures)}; choose one with --arch"
        )
    return lock.request.architectures[0]


def run_lock(args: argparse.Namespace) -> None:
    request = LockRequest(
        suite=args.suite,
        architectures=tuple(args.arch),
        packages=tuple(args.package or PYTHON_RUNTIME_PACKAGES),
        excludes=tuple(args.exclude),
        variant=args.variant,
    )
    mirrors = parse_mirrors(args.mirror)
    lock = generate_lock(
        request,
        {archive: urls[0] for archive, urls in mirrors.items()},
        args.keyring,
        check_valid_until=args.check_valid_until,
        limits=limits_from(args),
    )
    _write_atomically(args.output, lock.dumps())
    for architecture, packages in lock.packages.items():
        megabytes = sum(package.size for package in packages) / 1e6
        logging.info("locked %d packages (%.1f MB) for %s", len(packages), megabytes, architecture)


def run_fetch(args: argparse.Namespace) -> None:
    lock = Lock.loads(args.lock.read_bytes(), str(args.lock))
    architecture = _architecture(lock, args.arch)
    command = args.refresh_command or refresh_command(lock.request, args.lock)
    fetch_debs(
        lock.packages_for(architecture),
        parse_mirrors(args.mirror),
        args.output_dir,
        command,
        limits_from(args),
    )


def run_check(args: argparse.Namespace) -> None:
    lock = Lock.loads(args.lock.read_bytes(), str(args.lock))
    packages = [package for packages in lock.packages.values() for package in packages]
    checked, findings = check_debs(packages, parse_mirrors(args.mirror), limits_from(args))
    sys.stdout.buffer.write(check_report(checked, findings) + b"\n")


def run_layer(args: argparse.Namespace) -> None:
    lock = Lock.loads(args.lock.read_bytes(), str(args.lock))
    try:
        compression = Compression(args.compression, args.gzip_level)
    except ValueError as error:
        raise UsageError(str(error)) from None
    options = LayerOptions(compression=compression, mtime=args.source_date_epoch)
    # Absolute paths: bytecode compilation runs the image's interpreter from another directory.
    write_base_layer(
        lock,
        _architecture(lock, args.arch),
        args.debs.resolve(),
        args.output_dir.resolve(),
        options,
        args.bytecode,
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}",
        description="Lock, fetch and unpack Debian packages into a deterministic base layer.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    lock = commands.add_parser("lock", help="resolve packages against signed indexes")
    lock.add_argument("--suite", required=True, help="release codename, e.g. bookworm")
    lock.add_argument("--arch", action="append", required=True, help="e.g. amd64; repeatable")
    lock.add_argument(
        "--package",
        action="append",
        help=f"repeatable; default: the Python 3.11 runtime ({' '.join(PYTHON_RUNTIME_PACKAGES)})",
    )
    lock.add_argument("--exclude", action="append", default=[], help="never install; repeatable")
    lock.add_argument("--variant", choices=sorted(VARIANTS), default="minimal")
    lock.add_argument("--mirror", action="append", default=[], metavar="ARCHIVE=URL")
    lock.add_argument("--keyring", default=DEBIAN_ARCHIVE_KEYRING)
    lock.add_argument(
        "--no-check-valid-until",
        dest="check_valid_until",
        action="store_false",
        help="accept expired indexes (snapshot mirrors serve them on purpose)",
    )
    lock.add_argument("--output", type=Path, required=True)
    add_limit_arguments(lock, DOWNLOAD_LIMITS)
    lock.set_defaults(run=run_lock)

    fetch = commands.add_parser("fetch", help="download the pinned .debs")
    fetch.add_argument("--lock", type=Path, required=True)
    fetch.add_argument("--arch")
    fetch.add_argument("--output-dir", type=Path, required=True)
    fetch.add_argument("--mirror", action="append", default=[], metavar="ARCHIVE=URL")
    fetch.add_argument(
        "--refresh-command", help="how users regenerate the lock (named when a .deb is gone)"
    )
    add_limit_arguments(fetch, DOWNLOAD_LIMITS)
    fetch.set_defaults(run=run_fetch)

    layer = commands.add_parser("layer", help="write the base layer and its descriptor.json")
    layer.add_argument("--lock", type=Path, required=True)
    layer.add_argument("--arch")
    layer.add_argument("--debs", type=Path, required=True, help="where fetch put the .debs")
    layer.add_argument("--output-dir", type=Path, required=True)
    layer.add_argument("--compression", choices=("none", "gzip"), default="gzip")
    layer.add_argument("--gzip-level", type=int)
    layer.add_argument("--source-date-epoch", type=int, default=DEFAULT_MTIME)
    layer.add_argument("--bytecode", choices=BYTECODE_MODES, default="auto")
    layer.set_defaults(run=run_layer)

    check = commands.add_parser("check", help="ask the mirrors whether the pinned .debs are served")
    check.add_argument("--lock", type=Path, required=True)
    check.add_argument("--mirror", action="append", default=[], metavar="ARCHIVE=URL")
    add_limit_arguments(check, DOWNLOAD_LIMITS)
    check.set_defaults(run=run_check)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (DebianError, OciError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
