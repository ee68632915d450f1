"""The image's target (CPython X.Y on Linux/glibc for one architecture), the wheel tags it
accepts in pip's order of preference, and wheel file names.

The order follows `packaging.tags.sys_tags` for CPython on manylinux: the interpreter's own ABI
on each platform (newest glibc first, then the legacy manylinux2014/2010/1 aliases, then
`linux_<arch>`), then `abi3`, then `none`, then older `abi3` builds, then pure `pyXY`/`py3`
wheels for the platform, and last the `any` wheels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, FrozenSet, List, Optional, Tuple

from .requirements import canonical_name, marker_environment

Tag = Tuple[str, str, str]

# Docker platform architecture -> (platform_machine, oldest glibc a manylinux tag names).
_ARCHITECTURES: Dict[str, Tuple[str, Tuple[int, int]]] = {
    "amd64": ("x86_64", (2, 5)),
    "arm64": ("aarch64", (2, 17)),
}
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
_PYTHON = re.compile(r"^3\.([0-9]+)(?:\.([0-9]+))?$")
_GLIBC = re.compile(r"^2\.([0-9]+)$")


class TargetError(ValueError):
    """The target python, platform or glibc is malformed or unsupported."""


class WheelFilenameError(ValueError):
    """A file name is not a wheel's `{name}-{version}(-{build})?-{py}-{abi}-{platform}.whl`."""


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

    def marker_environment(self) -> Dict[str, str]:
        return marker_environment(self.python_full_version, self.machine)

    def describe(self) -> str:
        glibc = ".".join(map(str, self.glibc))
        return f"CPython {self.python} on linux/{self.architecture} (glibc {glibc})"

    def supported_tags(self) -> List[Tag]:
        """Every tag this target installs, most preferred first (pip's order)."""
        interpreter = f"cp3{self.minor}"
        platforms = self._platforms()
        tags: List[Tag] = []
        for abi in (interpreter, "abi3", "none"):
            tags += [(interpreter, abi, platform) for platform in platforms]
        for older in range(self.minor - 1, 1, -1):
            tags += [(f"cp3{older}", "abi3", platform) for platform in platforms]
        pythons = [f"py3{self.minor}", "py3"] + [
            f"py3{older}" for older in range(self.minor - 1, -1, -1)
        ]
        for python in pythons:
            tags += [(python, "none", platform) for platform in platforms]
        tags.append((interpreter, "none", "any"))
        tags += [(python, "none", "any") for python in pythons]
        return tags

    def _platforms(self) -> List[str]:
        machine, oldest = _ARCHITECTURES[self.architecture]
        platforms = []
        for minor in range(self.glibc[1], oldest[1] - 1, -1):
            platforms.append(f"manylinux_2_{minor}_{machine}")
            legacy = _LEGACY_MANYLINUX.get((2, minor))
            if legacy is not None:
                platforms.append(f"{legacy}_{machine}")
        platforms.append(f"linux_{machine}")
        return platforms


@dataclass(frozen=True)
class WheelFilename:
    """The parts of a wheel's file name (PEP 427), the tag set expanded."""

    filename: str
    name: str
    version: str
    tags: FrozenSet[Tag]

    @classmethod
    def parse(cls, filename: str) -> WheelFilename:
        if not filename.endswith(".whl"):
            raise WheelFilenameError(f"{filename!r} is not a wheel (no .whl suffix)")
        parts = filename[: -len(".whl")].split("-")
        if len(parts) not in (5, 6) or not all(parts):
            raise WheelFilenameError(
                f"{filename!r} is not `name-version(-build)?-python-abi-platform.whl`"
            )
        python, abi, platform = parts[-3:]
        tags = frozenset(
            (interpreter, abi_tag, platform_tag)
            for interpreter in python.split(".")
            for abi_tag in abi.split(".")
            for platform_tag in platform.split(".")
        )
        return cls(filename, canonical_name(parts[0]), parts[1], tags)


def best_wheel(filenames: List[str], target: Target) -> Optional[WheelFilename]:
    """The wheel pip would pick for `target` among `filenames` (sdists ignored), or None."""
    priority = {tag: rank for rank, tag in enumerate(target.supported_tags())}
    ranked = []
    for filename in filenames:
        if not filename.endswith(".whl"):
            continue
        wheel = WheelFilename.parse(filename)
        ranks = [priority[tag] for tag in wheel.tags if tag in priority]
        if ranks:
            ranked.append((min(ranks), wheel.filename, wheel))
    return min(ranked)[2] if ranked else None
