"""The command line that the Pants rules run: `python -m <this package> COMMAND`.

    plan   --lock LOCK --requirement REQ [--requirement REQ ...] --python 3.11[.2]
           --platform linux/amd64 [--glibc 2.36]
    fetch  --url URL --sha256 HEX --output FILE [LIMITS]
    group  --wheel FILE=SHA256 [--wheel ...] --python 3.11 [--threshold-mib 64]
           [--prefix opt/agent] [--interpreter /usr/bin/python3.11]
    layer  --wheel FILE=SHA256 [--skip PATH ...] [--wheel ...] --python 3.11 --output-dir OUT
           [--venv-version 3.11.2] [--kind big|small] [--prefix opt/agent]
           [--interpreter /usr/bin/python3.11] [--bytecode-interpreter PYTHON]
           [--compression gzip|none] [--gzip-level N] [--source-date-epoch N]
    check  --lock LOCK [LIMITS]

`plan` prints (JSON, one list sorted by project) the wheels the requirements need on the
target: `project`, `version`, `filename`, `url`, `sha256`.

`fetch` downloads one wheel of the plan; FILE appears only once its bytes match the sha256 (so a
build process per wheel caches each wheel by its hash, locally and remotely). LIMITS bound the
download as `python -m ai_agent.debian fetch` says.

`group` reads what each downloaded wheel installs (its archive's directory, not its bytes) and
prints the layers, in image order: a wheel that unpacks to more than the threshold alone, by
project; then the shared layer with the rest:

    {"layers": [{"name": "site-packages-torch", "kind": "big" | "small",
                 "wheels": [{"wheel": FILE, "sha256": …, "project": …, "version": …,
                             "unpackedSize": N, "skip": [PATH, …], "notes": […]}]}, …]}

A wheel's `skip` lists the image paths an earlier layer writes with the same bytes.

`layer` writes one of those layers: it verifies the wheels' sha256, installs them into the
virtual environment at the prefix for the image's `--interpreter` (except, for each wheel, the
`--skip` paths that follow it),
compiles their bytecode with `--bytecode-interpreter` (a CPython of the target's X.Y that runs
on this host; without it no .pyc is written and the image compiles at import time), adds the
environment's own files with `--venv-version`, and writes OUT/layer.tar[.gz] and
OUT/descriptor.json (the format of the `oci layer` command) and OUT/installed.json:

    {"digest": …, "bytecode": {"cpython": "3.11.7", "cacheTag": "cpython-311"} | null,
     "distributions": [{"project": …, "version": …, "wheel": …, "sha256": …,
                        "installedSize": N, "notes": […], "distInfo": PATH,
                        "license": {"expression", "license", "classifiers"}}]}

(`distInfo` is the image path of its `.dist-info` directory, `license` what its METADATA says,
`metadata.py`: what the SBOM writer reads.)

A big wheel's layer is gzipped at level 1 unless `--gzip-level` says otherwise.

`check` asks, with HEAD, whether every artifact the lock pins (every resolve, wheels and sdists)
is still served at its URL, and prints the report of the `debian check` command.

On a bad input the exit status is 2 and stderr has one `error: …` line naming the problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..debian.download import DOWNLOAD_LIMITS, download_verified
from ..debian.errors import DebianError
from ..oci.connection import add_limit_arguments, limits_from
from ..oci.errors import OciError
from ..oci.layer import DEFAULT_MTIME
from .errors import WheelsError


class _SkipOfPrecedingWheel(argparse.Action):
    """`--skip PATH` belongs to the `--wheel` before it: collected as {wheel index: [PATH]}."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: Any,
        option_string: Optional[str] = None,
    ) -> None:
        if not namespace.wheel:
            parser.error("--skip must follow the --wheel whose path it skips")
        skips = dict(getattr(namespace, self.dest))
        skips.setdefault(len(namespace.wheel) - 1, []).append(value)
        setattr(namespace, self.dest, skips)


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
    add_limit_arguments(fetch, DOWNLOAD_LIMITS)
    fetch.set_defaults(run=run_fetch)
    plan = commands.add_parser("plan", help="print the wheels to download, as JSON")
    plan.add_argument("--lock", type=Path, required=True, help="a Pants/pex lockfile")
    plan.add_argument("--requirement", action="append", required=True, help="PEP 508; repeatable")
    plan.add_argument("--python", required=True, help="the image's CPython: 3.11 or 3.11.2")
    plan.add_argument("--platform", required=True, help="linux/amd64 or linux/arm64")
    plan.add_argument("--glibc", default="2.36", help="the base's glibc (bookworm: 2.36)")
    plan.set_defaults(run=_step("run_plan"))
    group = commands.add_parser("group", help="print the layers of downloaded wheels, as JSON")
    layer = commands.add_parser("layer", help="install downloaded wheels into one layer")
    for command in (group, layer):
        command.add_argument(
            "--wheel", action="append", default=[], help="FILE=SHA256 of a downloaded wheel"
        )
        command.add_argument("--python", required=True, help="the image's CPython X.Y")
        command.add_argument("--prefix", default="opt/agent", help="relative install prefix")
        command.add_argument(
            "--interpreter", default="/usr/bin/python3", help="the image's, for script shebangs"
        )
    group.add_argument("--threshold-mib", type=int, default=64, help="own layer above this")
    group.set_defaults(run=_step("run_group"))
    layer.add_argument("--output-dir", type=Path, required=True)
    layer.add_argument(
        "--skip", action=_SkipOfPrecedingWheel, default={}, help="a path the --wheel before skips"
    )
    layer.add_argument("--venv-version", help="add pyvenv.cfg and bin/python* for CPython X.Y.Z")
    layer.add_argument("--kind", choices=("big", "small"), default="small")
    layer.add_argument(
        "--bytecode-interpreter", help="a CPython of the target's X.Y on this host; else no .pyc"
    )
    layer.add_argument("--compression", choices=("gzip", "none"), default="gzip")
    layer.add_argument(
        "--gzip-level", type=int, help="1..9 (default: 1 for a big wheel's layer, else 6)"
    )
    layer.add_argument("--source-date-epoch", type=int, default=DEFAULT_MTIME)
    layer.set_defaults(run=_step("run_layer"))
    check = commands.add_parser("check", help="ask whether the locked artifacts are served")
    check.add_argument("--lock", type=Path, required=True, help="a Pants/pex lockfile")
    add_limit_arguments(check, DOWNLOAD_LIMITS)
    check.set_defaults(run=_step("run_check"))
    return parser


def run_fetch(args: argparse.Namespace) -> None:
    args.output.parent.mkdir(parents=True, exist_ok=True)
    download_verified(args.url, args.output, args.sha256, limits=limits_from(args))


def _step(name: str) -> Callable[[argparse.Namespace], None]:
    """The command `steps.<name>`, imported only when it runs: a `fetch` step (one per wheel)
    needs neither `packaging` nor `installer`, whose import costs more than the rest of its
    start-up."""

    def run(args: argparse.Namespace) -> None:
        from . import steps

        getattr(steps, name)(args)

    return run


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except (WheelsError, DebianError, OciError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
