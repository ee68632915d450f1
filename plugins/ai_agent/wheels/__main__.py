"""The command line that the Pants rules run: `python -m <this package> COMMAND`.

    plan   --lock LOCK --requirement REQ [--requirement REQ ...] --python 3.11[.2]
           --platform linux/amd64 [--glibc 2.36]
    layers (the plan's options) --wheels DIR --output-dir OUT [--prefix opt/agent]
           [--interpreter /usr/bin/python3.11] [--bytecode-interpreter PYTHON]
           [--threshold-mib 64] [--compression gzip|none] [--gzip-level N]
           [--source-date-epoch N]
    fetch  --url URL --sha256 HEX --output FILE

`plan` prints (JSON, one list sorted by project) the wheels the requirements need on the
target: `project`, `version`, `filename`, `url`, `sha256`. The caller downloads them into DIR
under those file names, and `layers` verifies them against the lock, installs them under the
prefix, compiles their bytecode with `--bytecode-interpreter` (a CPython of the target's X.Y
that runs on this host; without it no .pyc is written and the image compiles at import time)
and writes, per layer, OUT/<name>/layer.tar[.gz] and OUT/<name>/descriptor.json (the format of
the `oci layer` command), then OUT/layers.json:

    {"target": {"python": "3.11", "platform": "linux/amd64", "glibc": "2.36"},
     "prefix": "opt/agent", "thresholdBytes": N,
     "bytecode": {"cpython": "3.11.7", "cacheTag": "cpython-311"} | null,
     "layers": [{"name": "site-packages-torch", "kind": "big" | "small",
                 "descriptor": "site-packages-torch/descriptor.json",
                 "digest": …, "diffID": …, "size": N,
                 "distributions": [{"project": …, "version": …, "wheel": …,
                                    "installedSize": N, "notes": […]}]}, …]}

`fetch` downloads one wheel of the plan; FILE appears only once its bytes match the sha256 (so a
build process per wheel caches each wheel by its hash, locally and remotely).

Layers are listed in image order: big distributions (one each, by name), then the shared one.
On a bad input the exit status is 2 and stderr has one `error: …` line naming the problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..debian.download import DownloadError, download_verified
from ..oci.layer import DEFAULT_MTIME, LayerError
from ..oci.types import canonical_json
from .errors import WheelsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}",
        description="Choose locked wheels for an image and turn them into layers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download one wheel, verified by sha256")
    fetch.add_argument("--url", required=True)
    fetch.add_argument("--sha256", required=True)
    fetch.add_argument("--output", type=Path, required=True)
    plan = commands.add_parser("plan", help="print the wheels to download, as JSON")
    layers = commands.add_parser("layers", help="install downloaded wheels into layers")
    for command in (plan, layers):
        command.add_argument("--lock", type=Path, required=True, help="a Pants/pex lockfile")
        command.add_argument(
            "--requirement", action="append", required=True, help="PEP 508; repeatable"
        )
        command.add_argument("--python", required=True, help="the image's CPython: 3.11 or 3.11.2")
        command.add_argument("--platform", required=True, help="linux/amd64 or linux/arm64")
        command.add_argument("--glibc", default="2.36", help="the base's glibc (bookworm: 2.36)")
    layers.add_argument("--wheels", type=Path, required=True, help="the downloaded wheels")
    layers.add_argument("--output-dir", type=Path, required=True)
    layers.add_argument("--prefix", default="opt/agent", help="relative install prefix")
    layers.add_argument("--interpreter", default="/usr/bin/python3", help="for script shebangs")
    layers.add_argument(
        "--bytecode-interpreter", help="a CPython of the target's X.Y on this host; else no .pyc"
    )
    layers.add_argument("--threshold-mib", type=int, default=64, help="own layer above this")
    layers.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    layers.add_argument(
        "--gzip-level", type=int, help="1..9 (default: 1 for a big distribution's layer, else 6)"
    )
    layers.add_argument("--source-date-epoch", type=int, default=DEFAULT_MTIME)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "fetch":
        try:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            download_verified(args.url, args.output, args.sha256)
        except (DownloadError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        return 0
    # Imported only now: a `fetch` step (one per wheel) needs neither `packaging` nor
    # `installer`, whose import costs more than the rest of its start-up.
    from .steps import resolve_wheels, run_layers
    from .target import Target

    try:
        target = Target.parse(args.python, args.platform, args.glibc)
        if args.command == "plan":
            wheels = resolve_wheels(args, target)
            sys.stdout.write(canonical_json([wheel.to_json() for wheel in wheels]).decode() + "\n")
        else:
            run_layers(args, target)
    except (
        WheelsError,
        LayerError,
        ValueError,  # malformed layouts and compression settings
        OSError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
