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

import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Set, Tuple

from .errors import UsageError, WheelsError
from .install import InstallLayout, ListedWheel, list_wheel
from .remote import WheelArchive, is_url

MIB = 1 << 20
DEFAULT_THRESHOLD = 64 * MIB
BIG = "big"
SMALL = "small"
SHARED_LAYER_NAME = "site-packages"
# Wheels listed at once (each mostly waits for its byte ranges).
LIST_JOBS = 8


class DistributionConflict(WheelsError):
    """Two distributions install one path with different contents, or a file where the other
    needs a directory; layers would silently shadow one."""


@dataclass(frozen=True)
class LockedWheel:
    """A wheel the lock pins: where it is (a downloaded file, or the URL that serves it) and
    its sha256."""

    location: str
    sha256: str

    @classmethod
    def parse(cls, argument: str) -> LockedWheel:
        """`LOCATION=SHA256`, as the command line takes it."""
        location, _, sha256 = argument.rpartition("=")
        if not location or len(sha256) != 64:
            raise UsageError(f"--wheel takes PATH=SHA256 or URL=SHA256, got {argument!r}")
        return cls(location, sha256.lower())

    @property
    def filename(self) -> str:
        """The wheel's file name: a URL's last path segment (without a query or fragment)."""
        path = urllib.parse.urlsplit(self.location).path if is_url(self.location) else self.location
        return urllib.parse.unquote(path.rsplit("/", 1)[-1])

    @property
    def path(self) -> Path:
        """Where a downloaded wheel is."""
        return Path(self.location)

    def argument(self) -> str:
        return f"{self.location}={self.sha256}"


@dataclass(frozen=True)
class PlannedWheel:
    """A wheel in its layer: the paths it leaves to an earlier layer, and why; the digest of
    the listing it was grouped by (`ListedWheel.digest`), with the bytes of its `skip` and
    `measure` paths (those it installs for a later wheel that skips them) in it."""

    wheel: LockedWheel
    project: str
    version: str
    unpacked_size: int
    listing: str
    skip: Tuple[str, ...] = ()
    measure: Tuple[str, ...] = ()
    notes: Tuple[str, ...] = ()

    def to_json(self) -> Dict[str, Any]:
        return {
            "wheel": self.wheel.location,
            "sha256": self.wheel.sha256,
            "project": self.project,
            "version": self.version,
            "unpackedSize": self.unpacked_size,
            "listing": self.listing,
            "skip": list(self.skip),
            "measure": list(self.measure),
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
    wheels: Sequence[LockedWheel],
    layout: InstallLayout,
    threshold: int = DEFAULT_THRESHOLD,
    archive_of: Callable[[LockedWheel], WheelArchive] = lambda wheel: wheel.path,
) -> List[PlannedLayer]:
    """Big wheels (unpacked size > `threshold` bytes) alone, by project name; then the shared
    layer with the rest (always: it holds the virtual environment). Each wheel is read as
    `archive_of` gives it: by default the downloaded file at its location."""

    def listing(wheel: LockedWheel, measure: Set[str]) -> ListedWheel:
        return list_wheel(archive_of(wheel), layout, measure)

    with ThreadPoolExecutor(LIST_JOBS) as pool:
        listed = dict(zip(wheels, pool.map(listing, wheels, [set()] * len(wheels))))
        by_name = sorted(wheels, key=lambda wheel: listed[wheel].project)
        big = [wheel for wheel in by_name if listed[wheel].unpacked_size > threshold]
        small = [wheel for wheel in by_name if listed[wheel].unpacked_size <= threshold]
        owners, shared = _shared_files([*big, *small], listed)
        # Only now are bytes read: those of the paths that more than one wheel installs.
        measure: Dict[LockedWheel, Set[str]] = {}
        for wheel in by_name:
            for path in shared[wheel]:
                measure.setdefault(wheel, set()).add(path)
                measure.setdefault(owners[path], set()).add(path)
        listed.update(zip(measure, pool.map(listing, measure, measure.values())))
    planned = _install_shared_files_once([*big, *small], listed)
    layers = [
        PlannedLayer(f"{SHARED_LAYER_NAME}-{planned[wheel].project}", BIG, (planned[wheel],))
        for wheel in big
    ]
    layers.append(PlannedLayer(SHARED_LAYER_NAME, SMALL, tuple(planned[wheel] for wheel in small)))
    return layers


def _shared_files(
    order: List[LockedWheel], listed: Dict[LockedWheel, ListedWheel]
) -> Tuple[Dict[str, LockedWheel], Dict[LockedWheel, List[str]]]:
    """Which wheel installs each path first in `order` (the image's), and the paths each wheel
    installs that an earlier one does."""
    owners: Dict[str, LockedWheel] = {}
    shared: Dict[LockedWheel, List[str]] = {wheel: [] for wheel in order}
    for wheel in order:
        for path in sorted(listed[wheel].files):
            if owners.setdefault(path, wheel) != wheel:
                shared[wheel].append(path)
    _check_no_file_under_a_file({path: listed[owner].project for path, owner in owners.items()})
    return owners, shared


def _install_shared_files_once(
    order: List[LockedWheel], listed: Dict[LockedWheel, ListedWheel]
) -> Dict[LockedWheel, PlannedWheel]:
    owners, shared = _shared_files(order, listed)
    planned = {}
    for wheel in order:
        notes: Tuple[str, ...] = ()
        for path in shared[wheel]:
            owner = owners[path]
            kept, again = listed[owner].files[path], listed[wheel].files[path]
            assert kept is not None and again is not None
            if (kept.sha256, kept.mode) != (again.sha256, again.mode):
                raise DistributionConflict(
                    f"{path} is installed by both {owner.filename} and {wheel.filename} with"
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
        skip = set(shared[wheel])
        measure = sorted(
            path for path, file in info.files.items() if file is not None and path not in skip
        )
        planned[wheel] = PlannedWheel(
            wheel,
            info.project,
            info.version,
            info.unpacked_size,
            info.digest(),
            tuple(shared[wheel]),
            tuple(measure),
            notes,
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
