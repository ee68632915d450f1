"""The image's target, CPython X.Y on Linux/glibc for one architecture, and the wheel pip would
install there.

`packaging` describes only the interpreter it runs in, and the image is not the build host: the
target's marker environment and the platform list of its wheel tags are computed here, and
`packaging.tags` builds the tags from that list in pip's order of preference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from .errors import WheelsError

# Docker platform architecture -> (platform_machine, oldest glibc minor a manylinux tag names).
_ARCHITECTURES: Dict[str, Tuple[str, int]] = {"amd64": ("x86_64", 5), "arm64": ("aarch64", 17)}
# glibc 2.N -> the PEP 599/571/513 name of manylinux_2_N.
_LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
_PYTHON = re.compile(r"^3\.([0-9]+)(?:\.([0-9]+))?$")
_GLIBC = re.compile(r"^2\.([0-9]+)$")


class TargetError(WheelsError, ValueError):
    """The target python, platform or glibc is malformed or unsupported."""


@dataclass(frozen=True)
class Target:
    """What the image runs: CPython `python` (X.Y or X.Y.Z) on linux/`architecture` with glibc."""

    python: str
    architecture: str
    glibc: Tuple[int, int]

    @classmethod
    def parse(cls, python: str, platform: str, glibc: str) -> Target:
        if not _PYTHON.match(python) or int(python.split(".")[1]) < 8:
            raise TargetError(f"--python must be CPython 3.X or 3.X.Y with X >= 8, got {python!r}")
        os_name, _, architecture = platform.partition("/")
        if os_name != "linux" or architecture not in _ARCHITECTURES:
            raise TargetError(
                f"--platform must be one of {[f'linux/{arch}' for arch in _ARCHITECTURES]},"
                f" got {platform!r}"
            )
        glibc_match = _GLIBC.match(glibc)
        if not glibc_match:
            raise TargetError(f"--glibc must look like 2.36, got {glibc!r}")
        return cls(python, architecture, (2, int(glibc_match[1])))

    @property
    def minor(self) -> int:
        return int(self.python.split(".")[1])

    @property
    def machine(self) -> str:
        return _ARCHITECTURES[self.architecture][0]

    @property
    def python_full_version(self) -> str:
        """X.Y.Z; X.Y alone stands for X.Y.0 in `python_full_version` markers."""
        return self.python if self.python.count(".") == 2 else f"{self.python}.0"

    def describe(self) -> str:
        glibc = ".".join(map(str, self.glibc))
        return f"CPython {self.python} on linux/{self.architecture} (glibc {glibc})"

    def marker_environment(self) -> Dict[str, str]:
        """The target's PEP 508 marker values; packaging's `default_environment()` is the host's."""
        return {
            "implementation_name": "cpython",
            "implementation_version": self.python_full_version,
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": self.python_full_version,
            "python_version": f"3.{self.minor}",
            "sys_platform": "linux",
        }

    def supported_tags(self) -> List[Tag]:
        """Every tag the target installs, most preferred first (pip's order)."""
        python_version = (3, self.minor)
        interpreter = f"cp3{self.minor}"
        platforms = self._platforms()
        return [
            *cpython_tags(python_version, [interpreter], platforms),
            *compatible_tags(python_version, interpreter, platforms),
        ]

    def _platforms(self) -> List[str]:
        """The target glibc's platform tags, best first: `packaging.tags` knows the host's only."""
        # manylinux_2_N from the target's glibc down to the architecture's oldest, each legacy
        # alias right after its version, then linux_<arch>: pip's list on a host with that glibc.
        machine, oldest_minor = _ARCHITECTURES[self.architecture]
        platforms = []
        for minor in range(self.glibc[1], oldest_minor - 1, -1):
            platforms.append(f"manylinux_2_{minor}_{machine}")
            if minor in _LEGACY_MANYLINUX:
                platforms.append(f"{_LEGACY_MANYLINUX[minor]}_{machine}")
        platforms.append(f"linux_{machine}")
        return platforms


def best_wheel(filenames: Iterable[str], target: Target) -> Optional[str]:
    """The wheel pip would pick for `target` among `filenames` (sdists ignored), or None;
    packaging has tags but no chooser. A malformed wheel name raises `InvalidWheelFilename` (or
    `InvalidVersion`, which packaging 21.3 lets through for a bad version part)."""
    rank_of = {tag: rank for rank, tag in enumerate(target.supported_tags())}
    ranked = []
    for filename in filenames:
        if filename.endswith(".whl"):
            _, _, _, tags = parse_wheel_filename(filename)
            ranks = [rank_of[tag] for tag in tags if tag in rank_of]
            if ranks:
                ranked.append((min(ranks), filename))
    return min(ranked)[1] if ranked else None
