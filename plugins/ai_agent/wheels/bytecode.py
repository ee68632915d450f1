"""Compile installed distributions to bytecode at build time, so that an image on a read-only
root never compiles (or tries to write) a .pyc at start-up.

The compiler is any interpreter *command* of the target's CPython X.Y: the build host's own
`python3.11`, or the image's interpreter run through the image's dynamic loader (the Debian
base builder does that for the standard library). The .pyc files are `unchecked-hash` ones (no
source mtime inside, never re-validated at import) and their embedded paths are the image
paths (`/opt/agent/site-packages/...`), so the bytes depend on the sources and the compiling
CPython release only; which release compiled them is reported so that drift can be explained.

A source that does not compile (test data or templates written for Python 2 ship in wheels)
gets no .pyc, as with pip; the distribution's notes name it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

from .errors import WheelsError
from .installed import InstalledDistribution, InstalledFile, file_sha256

# What the compiling interpreter reports about itself (no site, no bytecode of its own).
_PROBE = (
    "import json, sys; print(json.dumps({'implementation': sys.implementation.name,"
    " 'version': list(sys.version_info[:3]), 'cache_tag': sys.implementation.cache_tag}))"
)
_ENVIRONMENT = {"PYTHONHASHSEED": "0", "LC_ALL": "C.UTF-8", "PATH": "/usr/bin:/bin"}


def compileall_arguments(root: Path, directories: Iterable[Path]) -> List[str]:
    """`-m compileall` arguments that compile `directories` (inside the scratch tree `root`) the
    one reproducible way: every file recompiled, hash-checked instead of timestamped
    (`unchecked-hash`, so nothing is rewritten at run time), and in-image paths embedded (`root`
    stripped, `/` prepended) instead of scratch paths."""
    return [
        "-m",
        "compileall",
        "-q",
        "-f",
        "-j",
        "0",
        "--invalidation-mode",
        "unchecked-hash",
        "-s",
        str(root),
        "-p",
        "/",
        *(str(directory) for directory in directories),
    ]


class BytecodeError(WheelsError):
    """The interpreter cannot compile for the target, or compiling failed."""


@dataclass(frozen=True)
class Compiler:
    """An interpreter command (argv prefix) checked to be CPython of the target's X.Y."""

    command: Tuple[str, ...]
    version: str
    cache_tag: str

    @classmethod
    def probe(cls, command: Sequence[str], minor: int) -> Compiler:
        """Check that `command` runs CPython 3.`minor`, the image's."""
        try:
            result = subprocess.run(
                [*command, "-I", "-B", "-c", _PROBE],
                env=_ENVIRONMENT,
                capture_output=True,
                text=True,
            )
        except OSError as error:
            raise BytecodeError(f"cannot run {command[0]}: {error.strerror}") from None
        if result.returncode != 0:
            raise BytecodeError(
                f"{command[0]} failed (exit {result.returncode}): {result.stderr[-1000:]}"
            )
        facts = json.loads(result.stdout)
        version = ".".join(str(part) for part in facts["version"])
        if facts["implementation"] != "cpython" or facts["version"][:2] != [3, minor]:
            raise BytecodeError(
                f"{command[0]} is {facts['implementation']} {version}, but the image runs"
                f" CPython 3.{minor}: bytecode must come from CPython 3.{minor}"
                f" (give a python3.{minor} of the build host or the image's own)"
            )
        return cls(tuple(command), version, facts["cache_tag"])

    def compile(
        self, distribution: InstalledDistribution, site_packages: str
    ) -> InstalledDistribution:
        """Compile the distribution's sources under `site_packages` (an image path) in its
        scratch tree and return it with the .pyc files added."""
        sources = [
            installed.path
            for installed in distribution.files
            if installed.path.startswith(f"{site_packages}/") and installed.path.endswith(".py")
        ]
        if not sources:
            return distribution
        root = distribution.root
        command = [
            *self.command,
            "-I",
            "-B",
            *compileall_arguments(root, [root / site_packages]),
        ]
        result = subprocess.run(
            command, env=_ENVIRONMENT, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = result.stdout.decode("utf-8", "replace").replace(str(root), "")
        # Exit 1 with per-file complaints is "some sources do not compile"; anything else broke.
        if result.returncode != 0 and not (result.returncode == 1 and "Error compiling" in output):
            raise BytecodeError(
                f"compiling {distribution.wheel} failed (exit {result.returncode}):"
                f" {output[-2000:]}"
            )
        compiled: List[InstalledFile] = []
        notes = list(distribution.notes)
        for source in sources:
            directory, name = os.path.split(source)
            pyc = f"{directory}/__pycache__/{name[:-3]}.{self.cache_tag}.pyc"
            host_pyc = root / pyc
            if host_pyc.is_file():
                compiled.append(
                    InstalledFile(pyc, 0o644, host_pyc.stat().st_size, file_sha256(host_pyc))
                )
            else:
                notes.append(f"no bytecode for {source}: it does not compile")
        return replace(distribution.with_files(compiled), notes=tuple(notes))
