"""The command line that the Pants rules run: `python -m <this package> COMMAND`.

    plan   --lock LOCK --requirement REQ [--requirement REQ ...] --python 3.11[.2]
           --platform linux/amd64 [--glibc 2.36]
    group  --wheel WHEEL=SHA256 [--wheel ...] --python 3.11 [--threshold-mib 64]
           [--prefix opt/agent] [--interpreter /usr/bin/python3.11] [LIMITS]
    layer  --wheel WHEEL=SHA256 [--listing HEX] [--skip PATH ...] [--measure PATH ...]
           [--wheel ...] --python 3.11 --output-dir OUT
           [--venv-version 3.11.2] [--kind big|small] [--prefix opt/agent]
           [--interpreter /usr/bin/python3.11] [--bytecode-interpreter PYTHON]
           [--compression gzip|none] [--gzip-level N] [--source-date-epoch N] [LIMITS]
    check  --lock LOCK [LIMITS]

WHEEL is a downloaded wheel's path or the URL that serves it (a plan's `url`). LIMITS bound
downloads as `python -m ai_agent.debian fetch` says.

`plan` prints (JSON, one list sorted by project) the wheels the requirements need on the
target: `project`, `version`, `filename`, `url`, `sha256`.

`group` reads what each wheel installs (its archive's directory, not its bytes; a URL's by HTTP
byte ranges, or downloaded whole where the server serves no ranges) and prints the layers, in
image order: a wheel that unpacks to more than the threshold alone, by project; then the
shared layer with the rest:

    {"layers": [{"name": "site-packages-torch", "kind": "big" | "small",
                 "wheels": [{"wheel": WHEEL, "sha256": …, "project": …, "version": …,
                             "unpackedSize": N, "listing": HEX, "skip": [PATH, …],
                             "measure": [PATH, …], "notes": […]}]}, …]}

A wheel's `skip` lists the image paths an earlier layer writes with the same bytes, `measure`
those it writes for a later wheel that skips them; `listing` is the digest of what it lists,
the bytes of those paths included.

`layer` writes one of those layers: it downloads the wheels given by URL, verifies the wheels'
sha256 and, with `--listing`, that each lists what it was grouped by, installs them into the
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

from ..debian.download import DOWNLOAD_LIMITS
from ..debian.errors import DebianError
from ..oci.errors import OciError
from ..oci.layer import DEFAULT_MTIME
from ..oci.limits import add_limit_arguments
from .errors import WheelsError


class _OfPrecedingWheel(argparse.Action):
    """`--skip`, `--measure` and `--listing` belong to the `--wheel` before them: collected as
    {wheel index: [value]}."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        value: Any,
        option_string: Optional[str] = None,
    ) -> None:
        if not namespace.wheel:
            parser.error(f"{option_string} must follow the --wheel it is about")
        skips = dict(getattr(namespace, self.dest))
        skips.setdefault(len(namespace.wheel) - 1, []).append(value)
        setattr(namespace, self.dest, skips)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {__package__}",
        description="Choose locked wheels for an image and turn them into layers.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="print the wheels to download, as JSON")
    plan.add_argument("--lock", type=Path, required=True, help="a Pants/pex lockfile")
    plan.add_argument("--requirement", action="append", required=True, help="PEP 508; repeatable")
    plan.add_argument("--python", required=True, help="the image's CPython: 3.11 or 3.11.2")
    plan.add_argument("--platform", required=True, help="linux/amd64 or linux/arm64")
    plan.add_argument("--glibc", default="2.36", help="the base's glibc (bookworm: 2.36)")
    plan.set_defaults(run=_step("run_plan"))
    group = commands.add_parser("group", help="print the layers of locked wheels, as JSON")
    layer = commands.add_parser("layer", help="install locked wheels into one layer")
    for command in (group, layer):
        command.add_argument(
            "--wheel", action="append", default=[], help="PATH=SHA256 or URL=SHA256 of a wheel"
        )
        add_limit_arguments(command, DOWNLOAD_LIMITS)
        command.add_argument("--python", required=True, help="the image's CPython X.Y")
        command.add_argument("--prefix", default="opt/agent", help="relative install prefix")
        command.add_argument(
            "--interpreter", default="/usr/bin/python3", help="the image's, for script shebangs"
        )
    group.add_argument("--threshold-mib", type=int, default=64, help="own layer above this")
    group.set_defaults(run=_step("run_group"))
    layer.add_argument("--output-dir", type=Path, required=True)
    layer.add_argument(
        "--skip", action=_OfPrecedingWheel, default={}, help="a path the --wheel before skips"
    )
    layer.add_argument(
        "--measure",
        action=_OfPrecedingWheel,
        default={},
        help="a path of the --wheel before whose bytes its --listing holds",
    )
    layer.add_argument(
        "--listing",
        action=_OfPrecedingWheel,
        default={},
        help="the digest of what the --wheel before was grouped by",
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


def _step(name: str) -> Callable[[argparse.Namespace], None]:
    """The command `steps.<name>`, imported only when it runs (`--help` and a bad command line
    need neither `packaging` nor `installer`, whose import costs more than the rest)."""

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
