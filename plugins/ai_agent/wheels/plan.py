"""Group an image's wheels into layers, from what each wheel lists, before anything is unpacked.

Every wheel that unpacks to more than the threshold (torch, the nvidia-* CUDA wheels) gets a
layer of its own, and all the others share one layer, after the big ones, with the virtual
environment's own files. A big wheel's layer depends only on that wheel (and the few paths it
leaves to an earlier layer), so it is one build step that every agent locking the same wheel
shares, and bumping or adding a small requirement rebuilds the shared layer only.

A path that several wheels install with the same bytes and mode (the `nvidia/` namespace's
`__init__.py` of every nvidia-* wheel) is written once, by the first of them in image order; the
others skip it. The same path with other bytes is refused: pip would let whichever wheel it
unpacks last win, and an image must not depend on that order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Set, Tuple

from .errors import UsageError, WheelsError
from .install import InstallLayout, ListedWheel, list_wheel

MIB = 1 << 20
DEFAULT_THRESHOLD = 64 * MIB
BIG = "big"
SMALL = "small"
SHARED_LAYER_NAME = "site-packages"


class DistributionConflict(WheelsError):
    """Two distributions install one path with different contents, or a file where the other
    needs a directory; layers would silently shadow one."""


@dataclass(frozen=True)
class LockedWheel:
    """A downloaded wheel and the sha256 its lock pins."""

    path: Path
    sha256: str

    @classmethod
    def parse(cls, argument: str) -> LockedWheel:
        """`PATH=SHA256`, as the command line takes it."""
        path, _, sha256 = argument.rpartition("=")
        if not path or len(sha256) != 64:
            raise UsageError(f"--wheel takes PATH=SHA256, got {argument!r}")
        return cls(Path(path), sha256.lower())

    def argument(self) -> str:
        return f"{self.path}={self.sha256}"


@dataclass(frozen=True)
class PlannedWheel:
    """A wheel in its layer: the paths it leaves to an earlier layer, and why."""

    wheel: LockedWheel
    project: str
    version: str
    unpacked_size: int
    skip: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    def to_json(self) -> Dict[str, Any]:
        return {
            "wheel": str(self.wheel.path),
            "sha256": self.wheel.sha256,
            "project": self.project,
            "version": self.version,
            "unpackedSize": self.unpacked_size,
            "skip": list(self.skip),
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class PlannedLayer:
    """One layer: its name, kind (BIG: one wheel; SMALL: the shared one) and wheels."""

    name: str
    kind: str
    wheels: Tuple[PlannedWheel, ...]

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "wheels": [wheel.to_json() for wheel in self.wheels],
        }


def plan_layers(
    wheels: Sequence[LockedWheel], layout: InstallLayout, threshold: int = DEFAULT_THRESHOLD
) -> List[PlannedLayer]:
    """Big wheels (unpacked size > `threshold` bytes) alone, by project name; then the shared
    layer with the rest (always: it holds the virtual environment)."""
    listed = {wheel: list_wheel(wheel.path, layout) for wheel in wheels}
    by_name = sorted(wheels, key=lambda wheel: listed[wheel].project)
    big = [wheel for wheel in by_name if listed[wheel].unpacked_size > threshold]
    small = [wheel for wheel in by_name if listed[wheel].unpacked_size <= threshold]
    planned = _install_shared_files_once([*big, *small], listed, layout)
    layers = [
        PlannedLayer(f"{SHARED_LAYER_NAME}-{planned[wheel].project}", BIG, (planned[wheel],))
        for wheel in big
    ]
    layers.append(PlannedLayer(SHARED_LAYER_NAME, SMALL, tuple(planned[wheel] for wheel in small)))
    return layers


def _install_shared_files_once(
    order: List[LockedWheel], listed: Dict[LockedWheel, ListedWheel], layout: InstallLayout
) -> Dict[LockedWheel, PlannedWheel]:
    owners: Dict[str, LockedWheel] = {}
    shared: Dict[LockedWheel, List[str]] = {wheel: [] for wheel in order}
    for wheel in order:
        for path in sorted(listed[wheel].files):
            if owners.setdefault(path, wheel) != wheel:
                shared[wheel].append(path)
    _check_no_file_under_a_file({path: listed[owner].project for path, owner in owners.items()})
    # Only now are bytes read: those of the paths that more than one wheel installs.
    measure: Dict[LockedWheel, Set[str]] = {}
    for wheel in order:
        for path in shared[wheel]:
            measure.setdefault(wheel, set()).add(path)
            measure.setdefault(owners[path], set()).add(path)
    measured = {wheel: list_wheel(wheel.path, layout, paths) for wheel, paths in measure.items()}
    planned = {}
    for wheel in order:
        notes: Tuple[str, ...] = ()
        for path in shared[wheel]:
            owner = owners[path]
            kept, again = measured[owner].files[path], measured[wheel].files[path]
            assert kept is not None and again is not None
            if (kept.sha256, kept.mode) != (again.sha256, again.mode):
                raise DistributionConflict(
                    f"{path} is installed by both {owner.path.name} and {wheel.path.name} with"
                    " different contents, so the image would depend on which one is unpacked"
                    " last. Remove one of the two projects from the resolve (they are"
                    " alternatives, e.g. `jwt` and `PyJWT`) and regenerate the lockfile."
                )
        if shared[wheel]:
            kept_by = sorted({listed[owners[path]].project for path in shared[wheel]})
            paths = shared[wheel]
            notes = (
                f"{len(paths)} file(s) with the same bytes as in {', '.join(kept_by)} are"
                f" installed once, by the first layer: {', '.join(paths[:3])}"
                + (" ..." if len(paths) > 3 else ""),
            )
        info = listed[wheel]
        planned[wheel] = PlannedWheel(
            wheel, info.project, info.version, info.unpacked_size, tuple(shared[wheel]), notes
        )
    return planned


def _check_no_file_under_a_file(owners: Dict[str, str]) -> None:
    """Refuse a file where another distribution needs a directory."""
    for path, owner in owners.items():
        parent = path.rpartition("/")[0]
        while parent:
            if parent in owners:
                raise DistributionConflict(
                    f"{parent} is a file of {owners[parent]} but a directory of {owner}"
                )
            parent = parent.rpartition("/")[0]
